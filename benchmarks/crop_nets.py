"""Per-crop time of R-Net and O-Net widths on ONNX Runtime (random weights: the time does not depend on them).

    python benchmarks/crop_nets.py                       # the table in docs/speed.md ("Narrower R-Net and O-Net")
    python benchmarks/crop_nets.py --crops 100 --threads 1 --repeats 15

Each net is written for the runtime as shipped sets are (``weights.onnx.to_onnx_bytes``) and run on
batches of ``--crops`` crops, as the cascade hands them over; MACs are per crop
(``compress.memory.trace``). Time it on a quiet machine.
"""
from __future__ import annotations

import argparse
import time

import numpy as np
import onnxruntime as ort
import torch

from openmtcnn.compress.memory import trace
from openmtcnn.models.nets import ONet, RNet
from openmtcnn.weights.onnx import to_onnx_bytes

CASES = [
    ("published R-Net (28/48/64/128, PReLU)", RNet, {}),
    ("R-Net 16/32/48/96, ReLU", RNet, {"channels": (16, 32, 48, 96), "act": "relu"}),
    ("R-Net 16/24/32/64, ReLU", RNet, {"channels": (16, 24, 32, 64), "act": "relu"}),
    ("R-Net 12/24/32/64, ReLU, separable", RNet, {"channels": (12, 24, 32, 64), "act": "relu", "separable": True}),
    ("published O-Net (32/64/64/128/256, PReLU)", ONet, {}),
    ("O-Net 24/48/48/96/192, ReLU", ONet, {"channels": (24, 48, 48, 96, 192), "act": "relu"}),
    ("O-Net 16/32/32/64/128, ReLU", ONet, {"channels": (16, 32, 32, 64, 128), "act": "relu"}),
    ("O-Net 16/32/48/64/128, ReLU, separable", ONet, {"channels": (16, 32, 48, 64, 128), "act": "relu",
                                                      "separable": True}),
]


def per_crop_us(net: torch.nn.Module, crops: int, threads: int, repeats: int) -> float:
    """Median microseconds a crop, over ``repeats`` runs of one batch."""
    opts = ort.SessionOptions()
    opts.intra_op_num_threads, opts.inter_op_num_threads = threads, 1
    sess = ort.InferenceSession(to_onnx_bytes(net.eval()), opts, providers=["CPUExecutionProvider"])
    size = net.input_size
    feed = {sess.get_inputs()[0].name: np.random.default_rng(0).uniform(0, 255, (crops, 3, size, size)).astype(np.float32)}
    for _ in range(3):
        sess.run(None, feed)
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        sess.run(None, feed)
        times.append(time.perf_counter() - t)
    return float(np.median(times)) * 1e6 / crops


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--crops", type=int, default=100)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--repeats", type=int, default=15)
    args = p.parse_args()
    torch.manual_seed(0)
    print("| net | MMAC / crop | µs / crop |\n|---|---|---|")
    for name, cls, kwargs in CASES:
        net = cls(**kwargs)
        macs = sum(layer.macs for layer in trace(net, net.input_size, net.input_size)) / 1e6
        print(f"| {name} | {macs:.2f} | {per_crop_us(net, args.crops, args.threads, args.repeats):.1f} |", flush=True)


if __name__ == "__main__":
    main()
