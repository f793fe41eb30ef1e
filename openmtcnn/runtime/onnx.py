"""The three nets on ONNX Runtime, one session each, CPU by default, CUDA when present."""
from __future__ import annotations

import numpy as np
import onnxruntime as ort

from openmtcnn import weights as store


def providers_for(device: str | None) -> list[str]:
    """Execution providers: CUDA first when asked for (or 'auto' and available), CPU always."""
    available = ort.get_available_providers()
    if device in (None, "cpu"):
        return ["CPUExecutionProvider"]
    if device in ("cuda", "auto"):
        if "CUDAExecutionProvider" in available:
            return ["CUDAExecutionProvider", "CPUExecutionProvider"]
        if device == "cuda":
            raise ValueError(f"CUDA requested but ONNX Runtime offers only {available}")
        return ["CPUExecutionProvider"]
    raise ValueError(f"unknown device {device!r}; expected 'cpu', 'cuda' or 'auto'")


def session_options(threads: int | None) -> ort.SessionOptions:
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.inter_op_num_threads = 1
    if threads:
        opts.intra_op_num_threads = int(threads)
    opts.log_severity_level = 3
    return opts


class OnnxNets:
    """``nets(stage, batch)`` -> tuple of NumPy outputs (prob, box[, landmarks])."""

    def __init__(self, weights: str = store.DEFAULT, threads: int | None = None, device: str | None = None):
        opts, providers = session_options(threads), providers_for(device)
        self.sessions = {s: ort.InferenceSession(str(store.onnx_path(weights, s)), opts, providers=providers)
                         for s in store.STAGES}

    def __call__(self, stage: str, batch: np.ndarray) -> tuple[np.ndarray, ...]:
        return tuple(self.sessions[stage].run(None, {"image": np.ascontiguousarray(batch, np.float32)}))
