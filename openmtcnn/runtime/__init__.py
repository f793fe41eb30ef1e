"""Executing the three nets: ONNX Runtime by default, PyTorch when asked (and installed)."""
from __future__ import annotations

from openmtcnn.runtime.onnx import OnnxNets

__all__ = ["OnnxNets", "make_nets"]


def make_nets(weights: str = "published", backend: str = "onnx", threads: int | None = None,
              device: str | None = None):
    """The three nets of a weight set on the chosen backend ("onnx" or "torch")."""
    if backend == "onnx":
        return OnnxNets(weights, threads=threads, device=device)
    if backend == "torch":
        from openmtcnn.runtime.torch import TorchNets
        return TorchNets(weights, threads=threads, device=device)
    raise ValueError(f"unknown backend {backend!r}; expected 'onnx' or 'torch'")
