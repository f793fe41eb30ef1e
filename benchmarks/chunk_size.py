"""Microseconds per crop for R-Net and O-Net on ONNX Runtime at several crops-per-call chunk sizes.

Backs ``openmtcnn.runtime.CPU_CHUNKS``: a chunk whose activations stay in cache beats one big batch.

    .venv/bin/python benchmarks/chunk_size.py --threads 2 --out runs/chunk_size.json
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from openmtcnn import weights as store
from openmtcnn.evaluate.speed import time_calls
from openmtcnn.runtime.onnx import OrtNet

SIZES = {"rnet": 24, "onet": 48}
CROPS = {"rnet": 4096, "onet": 1024}  # crops per timed pass (a batch of 32 VGA frames has about this many)


def per_crop_us(net: OrtNet, crops: np.ndarray, chunk: int, repeats: int) -> float:
    run = lambda: [net(crops[i:i + chunk]) for i in range(0, len(crops), chunk)]  # noqa: E731
    return float(np.median(time_calls(run, 1, repeats))) * 1e3 / len(crops)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--weights", default="published")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--chunks", default="16,32,64,128,256,512,1024,4096")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--out", type=Path, default=Path("runs/chunk_size.json"))
    args = p.parse_args(argv)
    chunks = [int(c) for c in args.chunks.split(",")]
    rng = np.random.default_rng(0)
    rows = []
    for stage, size in SIZES.items():
        net = OrtNet(store.onnx_path(args.weights, stage), threads=args.threads)
        crops = rng.uniform(0, 255, (CROPS[stage], 3, size, size)).astype(np.float32)
        for chunk in chunks:
            us = per_crop_us(net, crops, chunk, args.repeats)
            rows.append({"stage": stage, "chunk": chunk, "us_per_crop": round(us, 2)})
            print(f"{stage} chunk {chunk:>5}: {us:7.2f} us/crop")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"weights": args.weights, "threads": args.threads, "rows": rows}, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
