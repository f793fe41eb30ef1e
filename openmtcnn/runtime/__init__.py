"""Executing the three nets: ONNX Runtime and OpenCV DNN by default, PyTorch when asked for."""
from __future__ import annotations

from typing import Callable

import numpy as np

from openmtcnn import weights as store

BACKENDS = ("auto", "onnx", "opencv", "torch")
Net = Callable[[np.ndarray], tuple]


class Nets:
    """The cascade's nets: ``nets(stage, batch)`` -> tuple of NumPy outputs (prob, box[, landmarks])."""

    def __init__(self, nets: dict[str, Net], engines: dict[str, str]):
        self.nets, self.engines = nets, engines

    def __call__(self, stage: str, batch: np.ndarray) -> tuple[np.ndarray, ...]:
        return self.nets[stage](batch)


def make_nets(weights: str = store.DEFAULT, backend: str = "auto", threads: int | None = None,
              device: str | None = "auto") -> Nets:
    """The three nets of a weight set.

    "auto" runs all three on ONNX Runtime: its CPU provider (the fastest engine measured for the
    exported graphs, see ``export.onnx.for_runtime``), or its CUDA provider on a GPU.
    Int8 weight sets (manifest ``"int8": true``, ONNX QDQ) run on ONNX Runtime only.
    """
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; expected one of {BACKENDS}")
    int8 = bool(store.manifest(weights).get("int8"))
    if int8 and backend in ("torch", "opencv"):
        raise ValueError(f"weights {str(weights)!r} are int8 ONNX (QDQ), which only ONNX Runtime runs: use "
                         "backend 'auto' or 'onnx' (or the float weight set they were made from)")
    if backend == "torch":
        from openmtcnn.runtime.torch import torch_nets
        nets = torch_nets(weights, threads=threads, device=device)
        return Nets(nets, {s: "torch" for s in nets})
    from openmtcnn.runtime.onnx import OrtNet, providers_for

    providers_for(device)  # an unknown or missing device fails here, before any loading
    if threads:
        import cv2
        cv2.setNumThreads(int(threads))  # OpenCV's pool is process-wide (resizing, DNN)
    engines = {s: "opencv" if backend == "opencv" else "onnx" for s in store.STAGES}
    nets = {}
    for stage, engine in engines.items():
        path = store.onnx_path(weights, stage)
        if engine == "opencv":
            from openmtcnn.runtime.opencv import CvNet
            nets[stage] = CvNet(path)
        else:
            nets[stage] = OrtNet(path, threads=threads, device=device)
    return Nets(nets, engines)
