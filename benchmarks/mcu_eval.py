"""The int8 C detector on WIDER FACE val photos at the camera resolution: agreement and AP.

Each photo is fitted whole into the camera frame (160x120, black bars), then detected by
1. the exported C code compiled for this machine (one process over all frames),
2. the NumPy int8 reference (``Int8MTCNN``), which must give the same integers,
3. the float cascade of the same weights (``MTCNN(weights=...)``) on the same frame.
Boxes are mapped back to the photo and scored by the WIDER FACE protocol (easy / medium / hard
over the chosen images). Calibration uses WIDER *train* photos (never the evaluated ones).

    python benchmarks/mcu_eval.py --images ../shared/data/widerface/WIDER_val/images \\
        --gt ../shared/data/widerface/eval_tools/ground_truth --weights mcu --n 200 --out runs/mcu_eval
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]


def match_fraction(a: np.ndarray, b: np.ndarray, iou: float = 0.5) -> tuple[int, int]:
    """(boxes of a with a box of b at IoU >= iou, boxes of a)."""
    from openmtcnn.geometry import iou_matrix

    if len(a) == 0:
        return 0, 0
    if len(b) == 0:
        return 0, len(a)
    return int((iou_matrix(a, b).max(axis=1) >= iou).sum()), len(a)


def to_photo(boxes: np.ndarray, scores: np.ndarray, scale: float, shift: tuple[int, int]) -> np.ndarray:
    """Frame boxes (x1 y1 x2 y2) as WIDER rows x y w h score in the photo's pixels."""
    from openmtcnn.evaluate.widerface import to_rows

    b = (np.asarray(boxes, np.float64) - np.tile(shift, 2)) / scale
    return to_rows(b, np.asarray(scores, np.float64))


def aps(results: dict) -> dict:
    return {s: round(results[s]["ap"], 4) for s in ("easy", "medium", "hard")}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    data = REPO.parent / "shared" / "data" / "widerface"
    ap.add_argument("--images", default=str(data / "WIDER_val" / "images"))
    ap.add_argument("--gt", default=str(data / "eval_tools" / "ground_truth"))
    ap.add_argument("--calib", default=str(data / "WIDER_train" / "images"),
                    help="calibration photos (default WIDER_train; the bundled sample when absent)")
    ap.add_argument("--calib-images", type=int, default=64)
    ap.add_argument("--weights", default="mcu", help="weight set name or folder (mcu family)")
    ap.add_argument("--n", type=int, default=200, help="val images, spread over the events (default 200)")
    ap.add_argument("--size", default="160x120", help="camera frame WxH (default 160x120)")
    ap.add_argument("--min-face", type=float, default=20, help="smallest face in frame pixels (default 20)")
    ap.add_argument("--out", default="runs/mcu_eval")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()

    import cv2
    import torch

    from openmtcnn import MTCNN
    from openmtcnn.cli.export_c import calibration_images
    from openmtcnn.compress.int8_cascade import (
        CascadeConfig,
        fit_camera,
        load_float_nets,
        quantize_cascade,
        read_frames,
        to_detections,
    )
    from openmtcnn.evaluate.report import plot_pr
    from openmtcnn.evaluate.widerface import evaluate, list_images, load_ground_truth
    from openmtcnn.export.c import build_host, export_c, parse_detections, write_ppm
    from openmtcnn.fileio import atomic_write_bytes
    from openmtcnn.progress import progress

    torch.set_num_threads(args.threads)
    cv2.setNumThreads(args.threads)
    width, height = (int(v) for v in args.size.lower().split("x"))
    out = Path(args.out)
    gt = load_ground_truth(args.gt)
    keys = [k for k in list_images(args.images) if k in gt]
    keys = keys[::max(1, len(keys) // args.n)][:args.n]

    t0 = time.perf_counter()
    calib = calibration_images(args.calib if Path(args.calib).is_dir() else None, args.calib_images)
    config = CascadeConfig(min_face_size=args.min_face)
    cascade = quantize_cascade(load_float_nets(args.weights), read_frames(calib, width, height), config)
    summary = export_c(cascade, out / "c", width, height, target="cortex-m4", info={"weights": str(args.weights)})
    exe = build_host(out / "c")
    quantise_s = time.perf_counter() - t0
    floating = MTCNN(min_face_size=args.min_face, weights=args.weights, threads=args.threads)

    frames, places, py_raw, fl = {}, {}, {}, {}
    t_py = t_fl = 0.0
    for key in progress(keys, desc="python int8 + float"):
        photo = cv2.cvtColor(cv2.imread(str(Path(args.images) / f"{key}.jpg")), cv2.COLOR_BGR2RGB)
        frame, scale, shift = fit_camera(photo, width, height)
        frames[key], places[key] = frame, (scale, shift)
        t = time.perf_counter()
        py_raw[key] = cascade.detect_raw(frame)
        t_py += time.perf_counter() - t
        t = time.perf_counter()
        fl[key] = floating.detect(frame)
        t_fl += time.perf_counter() - t
    ppm_dir = out / "frames"
    paths = {k: write_ppm(ppm_dir / f"{i:05d}.ppm", frames[k]) for i, k in enumerate(keys)}
    c_raw = {}
    t = time.perf_counter()
    for start in range(0, len(keys), 100):
        chunk = keys[start:start + 100]
        text = subprocess.run([str(exe), *(str(paths[k]) for k in chunk)], check=True, capture_output=True,
                              text=True).stdout
        found = parse_detections(text)
        c_raw.update({k: found[str(paths[k])] for k in chunk})
    t_c = time.perf_counter() - t

    identical, c_in_py, py_in_c, fl_in_q, q_in_fl = 0, [0, 0], [0, 0], [0, 0], [0, 0]
    score_diff, preds = 0.0, {"c": {}, "python_int8": {}, "float": {}}
    for k in keys:
        c, p = c_raw[k], py_raw[k]
        same = all(np.array_equal(c[f], p[f]) for f in ("boxes", "logits", "landmarks"))
        identical += same
        cd, pd = to_detections(c), to_detections(p)
        cd = cd._replace(scores=c["scores"])
        for acc, (a, b) in ((c_in_py, (cd.boxes, pd.boxes)), (py_in_c, (pd.boxes, cd.boxes)),
                            (fl_in_q, (fl[k].boxes, pd.boxes)), (q_in_fl, (pd.boxes, fl[k].boxes))):
            m, n = match_fraction(a, b)
            acc[0] += m
            acc[1] += n
        if same and len(pd.scores):
            score_diff = max(score_diff, float(np.abs(cd.scores - pd.scores).max()))
        scale, shift = places[k]
        preds["c"][k] = to_photo(cd.boxes, cd.scores, scale, shift)
        preds["python_int8"][k] = to_photo(pd.boxes, pd.scores, scale, shift)
        preds["float"][k] = to_photo(fl[k].boxes, fl[k].scores, scale, shift)

    scored = {name: evaluate(p, gt) for name, p in preds.items()}
    for setting in ("easy", "medium", "hard"):
        plot_pr({f"{name} @{width}x{height}": r[setting] for name, r in scored.items()}, out / f"pr_{setting}.png",
                f"WIDER val {setting}, {len(keys)} images fitted into {width}x{height}")

    def frac(a):
        return round(a[0] / a[1], 4) if a[1] else None

    report = {
        "weights": str(args.weights), "images": len(keys), "camera": [width, height], "min_face": args.min_face,
        "calibration_images": len(calib), "config": summary["config"], "arena_bytes": summary["arena_bytes"],
        "c_vs_python": {"identical_images": identical, "c_boxes_matched": frac(c_in_py),
                        "python_boxes_matched": frac(py_in_c), "max_score_diff": score_diff},
        "int8_vs_float": {"float_boxes_found_by_int8": frac(fl_in_q), "int8_boxes_found_by_float": frac(q_in_fl),
                          "detections_float": fl_in_q[1], "detections_int8": q_in_fl[1]},
        "ap": {name: aps(r) for name, r in scored.items()},
        "seconds": {"quantise_export_build": round(quantise_s, 2), "c_host_total": round(t_c, 2),
                    "python_int8_total": round(t_py, 2), "float_total": round(t_fl, 2)},
    }
    atomic_write_bytes(out / "mcu_eval.json", (json.dumps(report, indent=1) + "\n").encode())
    print(json.dumps({k: v for k, v in report.items() if k != "config"}, indent=1))
    print(f"wrote {out / 'mcu_eval.json'}")
    return 0 if identical == len(keys) else 1


if __name__ == "__main__":
    sys.exit(main())
