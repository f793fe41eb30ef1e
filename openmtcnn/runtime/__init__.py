"""Executing the three nets: ONNX Runtime by default, OpenCV DNN, PyTorch or ncnn when asked for."""
from __future__ import annotations

from typing import Callable

import numpy as np

from openmtcnn import weights as store
from openmtcnn.geometry import PNET_STRIDE, PNET_WINDOW

BACKENDS = ("auto", "onnx", "opencv", "torch", "ncnn")
Net = Callable[[np.ndarray], tuple]
# Crops per net call on a CPU: the activations of a chunk stay in cache. benchmarks/chunk_size.py,
# ONNX Runtime, 2 threads, two runs: R-Net 14-15 us/crop in chunks of 64 against 18-30 in one
# batch of 4096; O-Net 84 us/crop in chunks of 32 against 125-129.
CPU_CHUNKS = {"rnet": 64, "onet": 32}
# P-Net output positions per call on a CPU: a large pyramid level runs in strips of rows whose
# activations stay in cache. ONNX Runtime, 1 thread, published P-Net: 1152x648 level 29.6 ->
# 23.1 ms, 817x460 13.6 -> 11.3 ms; levels under twice this size gain nothing and run whole.
# The cascade also resizes each strip on its own and deals strips to its workers.
PNET_STRIP = 32768


def pnet_strips(height: int, width: int, cells: int) -> list[tuple[int, int, int]]:
    """How to cut a P-Net input map into strips of rows: (first output row, input rows start, end).

    Output row r sees input rows 2r .. 2r+11 (stride 2, 12 x 12 window), so the strip from
    output row r0 to r1 reads input rows 2*r0 .. 2*(r1-1)+11 and starts its pooling on an even
    row, as the whole map does; the last strip runs to the bottom, where max-pooling may have a
    partial window. Run one by one and joined in order, they give the numbers of one call.
    One strip when ``cells`` is 0 or the map has at most twice ``cells`` output positions.
    """
    rows_out, cols_out = ((n - PNET_WINDOW) // PNET_STRIDE + 1 for n in (height, width))
    if not cells or rows_out * cols_out <= 2 * cells:
        return [(0, 0, height)]
    rows = max(1, cells // cols_out)
    return [(r0, PNET_STRIDE * r0, height if r0 + rows >= rows_out else PNET_STRIDE * (r0 + rows - 1) + PNET_WINDOW)
            for r0 in range(0, rows_out, rows)]


class Nets:
    """The cascade's nets: ``nets(stage, batch)`` -> tuple of NumPy outputs (prob, box[, landmarks]).

    Batches larger than ``chunks[stage]`` run in chunks of that many crops, joined afterwards.
    ``strips``: P-Net output positions per call that the caller should cut large maps into
    (``pnet_strips``; 0 on a GPU).
    """

    def __init__(self, nets: dict[str, Net], engines: dict[str, str], chunks: dict[str, int] | None = None,
                 strips: int = 0):
        self.nets, self.engines, self.chunks, self.strips = nets, engines, chunks or {}, strips

    def __call__(self, stage: str, batch: np.ndarray) -> tuple[np.ndarray, ...]:
        chunk = self.chunks.get(stage, 0)
        if not chunk or len(batch) <= chunk:
            return self.nets[stage](batch)
        parts = [self.nets[stage](batch[i:i + chunk]) for i in range(0, len(batch), chunk)]
        return tuple(np.concatenate(outs) for outs in zip(*parts))


DEVICES = (None, "auto", "cpu", "cuda")


def torch_gpu(look_first: bool = True) -> bool:
    """Whether PyTorch is installed and sees a CUDA GPU.

    With ``look_first`` (device "auto"), PyTorch is imported only where an NVIDIA driver is
    visible, so CPU machines do not pay for importing it.
    """
    import importlib.util
    import os
    import sys

    try:
        if sys.modules.get("torch", 0) is None or importlib.util.find_spec("torch") is None:
            return False
    except (ImportError, ValueError):
        return False
    if look_first and sys.platform.startswith("linux") and not os.path.exists("/dev/nvidiactl"):
        return False
    try:
        import torch
    except ImportError:
        return False
    return bool(torch.cuda.is_available())


def choose_engine(backend: str = "auto", device: str | None = "auto", weights: str | None = None) -> tuple[str, str]:
    """(engine, device) that a backend and device request runs on: engine onnx/opencv/torch, cpu/cuda.

    "auto" on a GPU takes ONNX Runtime's CUDA provider, else PyTorch on CUDA, whichever is installed;
    "auto" without one, ONNX Runtime on the CPU. An explicit "cuda" that nothing can serve fails here.
    Int8 weight sets (manifest ``"int8": true``, ONNX QDQ) take ONNX Runtime under "auto", ncnn
    folders (``"format": "ncnn"``, from ``openmtcnn export ncnn``) ncnn.
    """
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; expected one of {BACKENDS}")
    if backend == "auto" and weights is not None:
        info = store.manifest(weights)
        if info.get("format") == "ncnn":
            backend = "ncnn"
        elif info.get("int8"):
            backend = "onnx"
    if device not in DEVICES:
        raise ValueError(f"unknown device {device!r}; expected 'cpu', 'cuda' or 'auto'")
    wants_gpu = device in ("cuda", "auto")
    if backend == "opencv":
        if device == "cuda":
            raise ValueError("backend 'opencv' runs on the CPU; for a GPU use backend 'auto', 'onnx' or 'torch'")
        return "opencv", "cpu"
    if backend == "ncnn":
        if device == "cuda":
            raise ValueError("backend 'ncnn' runs on the CPU here; for a GPU use backend 'auto', 'onnx' or 'torch'")
        return "ncnn", "cpu"
    if backend == "torch":
        gpu = wants_gpu and torch_gpu(look_first=False)
        if device == "cuda" and not gpu:
            raise ValueError("device 'cuda' with backend 'torch' needs PyTorch built with CUDA and a GPU it sees")
        return "torch", "cuda" if gpu else "cpu"
    from openmtcnn.runtime.onnx import cuda_available, providers_for

    if backend == "onnx" or not wants_gpu or cuda_available():
        return "onnx", "cuda" if providers_for(device)[0] == "CUDAExecutionProvider" else "cpu"
    if torch_gpu(look_first=device == "auto"):
        return "torch", "cuda"
    if device == "cuda":
        import onnxruntime as ort

        raise ValueError("device 'cuda' needs onnxruntime-gpu (this ONNX Runtime offers "
                         f"{ort.get_available_providers()}) or PyTorch with CUDA")
    return "onnx", "cpu"


def runs_concurrently(backend: str = "auto", device: str | None = "auto", weights: str | None = None) -> bool:
    """Whether one set of nets may serve several threads at once: ONNX Runtime on the CPU.

    (An OpenCV DNN net keeps its input between calls; GPUs batch instead.)
    """
    return choose_engine(backend, device, weights) == ("onnx", "cpu")


def make_nets(weights: str = store.DEFAULT, backend: str = "auto", threads: int | None = None,
              device: str | None = "auto") -> Nets:
    """The three nets of a weight set, on the engine ``choose_engine`` picks; a damaged, swapped or
    inconsistent file of the set is a ``weights.WeightsError`` naming it.

    On the CPU "auto" runs all three on ONNX Runtime (the fastest engine measured for the
    exported graphs, see ``weights.onnx.for_runtime``). Int8 weight sets (manifest
    ``"int8": true``, ONNX QDQ) run on ONNX Runtime only, ncnn folders on ncnn only.
    """
    store.check_weight_set(weights)
    engine, where = choose_engine(backend, device, weights)
    if engine != "onnx" and store.manifest(weights).get("int8"):
        raise ValueError(f"weights {str(weights)!r} are int8 ONNX (QDQ), which only ONNX Runtime runs: use "
                         "backend 'auto' or 'onnx' (or the float weight set they were made from)")
    if engine != "ncnn" and store.manifest(weights).get("format") == "ncnn":
        raise ValueError(f"weights {str(weights)!r} are ncnn files (openmtcnn export ncnn), which only backend "
                         "'ncnn' (or 'auto') runs")
    chunks, strips = (CPU_CHUNKS, PNET_STRIP) if where == "cpu" else (None, 0)
    if engine == "ncnn":
        from openmtcnn.runtime.ncnn import ncnn_nets
        nets = ncnn_nets(weights, threads=threads)
        return Nets(nets, {s: "ncnn" for s in nets}, chunks, strips)
    if engine == "torch":
        from openmtcnn.runtime.torch import torch_nets
        nets = torch_nets(weights, threads=threads, device=where)
        return Nets(nets, {s: "torch" for s in nets}, chunks, strips)
    nets = {}
    for stage in store.STAGES:
        path = store.onnx_path(weights, stage)
        if engine == "opencv":
            from openmtcnn.runtime.opencv import CvNet
            nets[stage] = CvNet(path, stage)
        else:
            from openmtcnn.runtime.onnx import OrtNet
            nets[stage] = OrtNet(path, threads=threads, device=where, stage=stage)
    return Nets(nets, {s: engine for s in store.STAGES}, chunks, strips)
