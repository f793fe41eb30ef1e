"""Executing the three nets: ONNX Runtime by default, OpenCV DNN or PyTorch when asked for."""
from __future__ import annotations

from typing import Callable

import numpy as np

from openmtcnn import weights as store

BACKENDS = ("auto", "onnx", "opencv", "torch")
Net = Callable[[np.ndarray], tuple]
# Crops per net call on a CPU: the activations of a chunk stay in cache. benchmarks/chunk_size.py,
# ONNX Runtime, 2 threads, two runs: R-Net 14-15 us/crop in chunks of 64 against 18-30 in one
# batch of 4096; O-Net 84 us/crop in chunks of 32 against 125-129.
CPU_CHUNKS = {"rnet": 64, "onet": 32}


class Nets:
    """The cascade's nets: ``nets(stage, batch)`` -> tuple of NumPy outputs (prob, box[, landmarks]).

    Batches larger than ``chunks[stage]`` run in chunks of that many crops, joined afterwards.
    """

    def __init__(self, nets: dict[str, Net], engines: dict[str, str], chunks: dict[str, int] | None = None):
        self.nets, self.engines, self.chunks = nets, engines, chunks or {}

    def __call__(self, stage: str, batch: np.ndarray) -> tuple[np.ndarray, ...]:
        chunk = self.chunks.get(stage, 0)
        if not chunk or len(batch) <= chunk:
            return self.nets[stage](batch)
        parts = [self.nets[stage](batch[i:i + chunk]) for i in range(0, len(batch), chunk)]
        return tuple(np.concatenate(outs) for outs in zip(*parts))


def runs_concurrently(backend: str = "auto", device: str | None = "auto") -> bool:
    """Whether one set of nets may serve several threads at once: ONNX Runtime on the CPU.

    (An OpenCV DNN net keeps its input between calls; GPUs batch instead.)
    """
    from openmtcnn.runtime.onnx import providers_for

    return backend in ("auto", "onnx") and providers_for(device)[0] == "CPUExecutionProvider"


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
        on_gpu = next(iter(nets.values())).device.type == "cuda"
        return Nets(nets, {s: "torch" for s in nets}, None if on_gpu else CPU_CHUNKS)
    from openmtcnn.runtime.onnx import OrtNet, providers_for

    on_gpu = providers_for(device)[0] == "CUDAExecutionProvider"  # an unknown device fails here
    engines = {s: "opencv" if backend == "opencv" else "onnx" for s in store.STAGES}
    nets = {}
    for stage, engine in engines.items():
        path = store.onnx_path(weights, stage)
        if engine == "opencv":
            from openmtcnn.runtime.opencv import CvNet
            nets[stage] = CvNet(path)
        else:
            nets[stage] = OrtNet(path, threads=threads, device=device)
    return Nets(nets, engines, None if on_gpu else CPU_CHUNKS)
