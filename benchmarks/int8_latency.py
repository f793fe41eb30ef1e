"""Latency of an int8 weight set against its float one, net by net and end to end, interleaved.

Every net gets the same fixed input: P-Net every pyramid level of the bundled photo fitted to
--size, R-Net and O-Net batches of --crops crops. The float set runs as ``MTCNN`` runs it
(P-Net on OpenCV DNN, R-Net/O-Net on ONNX Runtime); the int8 set on ONNX Runtime. Rounds
alternate between the two sets so that load from other processes hits both alike; the
figures are medians over rounds.

    .venv/bin/python benchmarks/int8_latency.py --int8 published-int8 --threads 1 2 --out runs/int8_latency.json
"""
from __future__ import annotations

import argparse
import json
import math
import platform
import time
from pathlib import Path

import cv2
import numpy as np

from openmtcnn import MTCNN
from openmtcnn.detect import boxes as B
from openmtcnn.detect.cascade import pyramid_scales
from openmtcnn.detect.image import to_rgb
from openmtcnn.evaluate.speed import fit_frame
from openmtcnn.runtime import make_nets

ASSET = Path(__file__).resolve().parents[1] / "openmtcnn" / "assets" / "astronaut.png"


def inputs(frame: np.ndarray, crops: tuple[int, int], seed: int = 0) -> dict[str, list[np.ndarray]]:
    """Fixed inputs per net: the pyramid for P-Net, random square crops for R-Net and O-Net."""
    integral = B.integral_image(frame)
    h, w = frame.shape[:2]
    levels = [B.area_resize(integral, math.ceil(w * s), math.ceil(h * s)).transpose(2, 0, 1)[None]
              for s in pyramid_scales(h, w, 20, 0.709)]
    rng = np.random.default_rng(seed)
    out = {"pnet": levels}
    for stage, n, size in (("rnet", crops[0], 24), ("onet", crops[1], 48)):
        xy = rng.uniform(0, min(h, w) - 40, (n, 2))
        boxes = np.hstack([xy, xy + rng.uniform(20, 120, (n, 1))])
        out[stage] = [B.crop_resize(frame, boxes, size, channels_first=True, integral=integral)]
    return out


def time_once(run) -> float:
    t = time.perf_counter()
    run()
    return (time.perf_counter() - t) * 1000


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--float", dest="float_set", default="published")
    ap.add_argument("--int8", default="published-int8")
    ap.add_argument("--image", default=str(ASSET))
    ap.add_argument("--size", default="640x480")
    ap.add_argument("--crops", type=int, nargs=2, default=(300, 40), metavar=("RNET", "ONET"))
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--rounds", type=int, default=20)
    ap.add_argument("--out", help="write the results here as JSON")
    args = ap.parse_args()

    width, height = (int(v) for v in args.size.split("x"))
    frame = fit_frame(to_rgb(args.image), width, height)
    data = inputs(frame, tuple(args.crops))
    results = []
    for threads in args.threads:
        cv2.setNumThreads(threads)
        sets = {name: (make_nets(name, threads=threads), MTCNN(weights=name, threads=threads))
                for name in (args.float_set, args.int8)}
        times = {name: {k: [] for k in ("pnet", "rnet", "onet", "detect")} for name in sets}
        for r in range(args.rounds + 2):  # two warm-up rounds
            for name, (nets, detector) in sets.items():
                sample = {stage: time_once(lambda n=nets, s=stage, xs=xs: [n(s, x) for x in xs])
                          for stage, xs in data.items()}
                sample["detect"] = time_once(lambda d=detector: d.detect(frame))
                if r >= 2:
                    for k, v in sample.items():
                        times[name][k].append(v)
        for name, (nets, _) in sets.items():
            row = {"weights": name, "threads": threads, "engines": nets.engines,
                   **{f"{k}_ms": round(float(np.median(v)), 2) for k, v in times[name].items()}}
            results.append(row)
            print(json.dumps(row))
    report = {"image": args.image, "size": args.size, "crops": list(args.crops), "rounds": args.rounds,
              "machine": {"platform": platform.platform(), "processor": platform.processor()}, "results": results}
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(report, indent=1) + "\n")


if __name__ == "__main__":
    main()
