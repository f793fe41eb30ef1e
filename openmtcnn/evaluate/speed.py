"""Latency of the cascade, end to end and per stage, with OpenCV's YuNet as an optional yardstick."""
from __future__ import annotations

import time
from pathlib import Path
from typing import Callable

import cv2
import numpy as np

# The per-stage table's rows: the stages MTCNN.run reports to its observer, in cascade order.
STAGE_GROUPS = {
    "pyramid + P-Net": "pnet",  # integral image, levels, P-Net, its NMS
    "R-Net": "rnet",  # crops, net, NMS
    "O-Net": "onet",  # crops, net
    "final NMS": "final",
}


def fit_frame(image: np.ndarray, width: int, height: int) -> np.ndarray:
    """Scale to cover width x height, then centre-crop: a real photo at a standard frame size."""
    h, w = image.shape[:2]
    s = max(width / w, height / h)
    resized = cv2.resize(image, (max(width, round(w * s)), max(height, round(h * s))), interpolation=cv2.INTER_AREA)
    y, x = (resized.shape[0] - height) // 2, (resized.shape[1] - width) // 2
    return np.ascontiguousarray(resized[y:y + height, x:x + width])


def time_calls(run: Callable[[], object], warmup: int, repeats: int) -> list[float]:
    """Milliseconds of each of ``repeats`` calls, after ``warmup`` untimed ones."""
    for _ in range(warmup):
        run()
    samples = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        run()
        samples.append((time.perf_counter() - t0) * 1e3)
    return samples


def summarise(samples: list[float]) -> dict:
    a = np.asarray(samples)
    return {"median_ms": round(float(np.median(a)), 3), "p90_ms": round(float(np.percentile(a, 90)), 3),
            "min_ms": round(float(a.min()), 3), "mean_ms": round(float(a.mean()), 3)}


def bench_mtcnn(detector, frame: np.ndarray, warmup: int = 3, repeats: int = 20) -> dict:
    """End-to-end latency and the median milliseconds of each stage (timed by ``MTCNN.run``'s observer)."""
    for _ in range(warmup):
        detector.detect(frame)
    totals, stages = [], {stage: [] for stage in STAGE_GROUPS.values()}
    record = lambda stage, index, candidates, seconds: stages[stage].append(seconds * 1e3)  # noqa: E731
    for _ in range(repeats):
        t0 = time.perf_counter()
        found = detector.run(frame, observer=record)
        totals.append((time.perf_counter() - t0) * 1e3)
    return {**summarise(totals), "faces": len(found.boxes),
            "stages_ms": {g: round(float(np.median(stages[stage])), 3) for g, stage in STAGE_GROUPS.items()}}


def bench_yunet(model: str | Path, frame: np.ndarray, warmup: int = 3, repeats: int = 20,
                score: float = 0.9) -> dict:
    """YuNet (cv2.FaceDetectorYN) on the same frame; OpenCV's thread count applies."""
    if not Path(model).is_file():
        raise FileNotFoundError(f"YuNet model not found: {model}")
    h, w = frame.shape[:2]
    det = cv2.FaceDetectorYN.create(str(model), "", (w, h), score_threshold=score)
    bgr = np.ascontiguousarray(frame[:, :, ::-1])
    faces = det.detect(bgr)[1]
    return {**summarise(time_calls(lambda: det.detect(bgr), warmup, repeats)),
            "faces": 0 if faces is None else len(faces), "score_threshold": score}


def format_table(rows: list[dict]) -> str:
    """One column per run: end-to-end numbers, then the per-stage medians."""
    head = ["", *[r["name"] for r in rows]]
    lines = [("median ms", [r["median_ms"] for r in rows]), ("p90 ms", [r["p90_ms"] for r in rows]),
             ("faces", [r["faces"] for r in rows])]
    lines += [(g, [r.get("stages_ms", {}).get(g, "") for r in rows]) for g in STAGE_GROUPS]
    lines += [("x YuNet", [r.get("ratio_to_yunet", "") for r in rows])]
    width = max(16, *(len(h) for h in head))
    fmt = lambda v: f"{v:.2f}" if isinstance(v, float) else str(v)  # noqa: E731
    out = ["".join(h.rjust(width) if i else h.ljust(18) for i, h in enumerate(head))]
    out += ["".join([name.ljust(18), *(fmt(v).rjust(width) for v in vals)]) for name, vals in lines]
    return "\n".join(out)
