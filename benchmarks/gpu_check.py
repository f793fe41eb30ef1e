"""The cascade on a GPU next to ONNX Runtime on the CPU: same faces, and how long each takes.

    python benchmarks/gpu_check.py --data ../shared/data --out runs/gpu_check.json

Uses the frames of bench_latency.py (640x480 photo, 1920x1080 tiles, 32 photos for detect(list)).
``--device`` is passed to ``MTCNN`` ("cuda": ONNX Runtime's CUDA provider or PyTorch on the GPU).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_latency import compose_batch, compose_frames, iou_matrix  # noqa: E402

from openmtcnn import MTCNN  # noqa: E402
from openmtcnn.evaluate.speed import summarise, time_calls  # noqa: E402
from openmtcnn.runtime import choose_engine  # noqa: E402


def agreement(a, b) -> dict:
    """Face counts, and over faces paired by best overlap, the lowest IoU and largest differences."""
    out = {"faces": [len(a.boxes), len(b.boxes)]}
    if len(a.boxes) and len(b.boxes):
        iou = iou_matrix(a.boxes, b.boxes)
        j = iou.argmax(1)
        out["min_pair_iou"] = float(iou.max(1).min())
        out["max_box_diff_px"] = float(np.abs(a.boxes - b.boxes[j]).max())
        out["max_landmark_diff_px"] = float(np.abs(a.landmarks - b.landmarks[j]).max())
        out["max_score_diff"] = float(np.abs(a.scores - b.scores[j]).max())
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", type=Path, default=Path(os.environ.get("OPENMTCNN_DATA", "../shared/data")))
    p.add_argument("--device", default="cuda")
    p.add_argument("--threads", type=int, default=os.cpu_count(), help="CPU threads for the CPU run")
    p.add_argument("--repeats", type=int, default=30)
    p.add_argument("--out", type=Path, default=Path("runs/gpu_check.json"))
    args = p.parse_args()

    small, large = compose_frames(args.data)
    batch = compose_batch(args.data)
    gpu = MTCNN(device=args.device)
    cpu = MTCNN(device="cpu", threads=args.threads)
    report = {"device": args.device, "engine": choose_engine("auto", args.device), "cpu_threads": args.threads}
    for name, frame in (("640x480", small.image), ("1920x1080", large.image)):
        report[name] = {
            "agreement": agreement(gpu.detect(frame), cpu.detect(frame)),
            "gpu": summarise(time_calls(lambda: gpu.detect(frame), 5, args.repeats)),
            "cpu": summarise(time_calls(lambda: cpu.detect(frame), 3, args.repeats)),
        }
    for name, det in (("gpu", gpu), ("cpu", cpu)):
        ms = float(np.median(time_calls(lambda: det.detect(batch), 2, max(3, args.repeats // 5))))
        report[f"batch{len(batch)}_{name}_frames_per_s"] = round(len(batch) / (ms / 1e3), 1)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2))
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
