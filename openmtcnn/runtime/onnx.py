"""A net on ONNX Runtime: CPU by default, CUDA when asked for and present."""
from __future__ import annotations

import numpy as np
import onnxruntime as ort


def cuda_available() -> bool:
    return "CUDAExecutionProvider" in ort.get_available_providers()


def providers_for(device: str | None) -> list[str]:
    """Execution providers: CUDA first when asked for (or 'auto' and available), CPU always."""
    if device in (None, "cpu"):
        return ["CPUExecutionProvider"]
    if device in ("cuda", "auto"):
        if cuda_available():
            return ["CUDAExecutionProvider", "CPUExecutionProvider"]
        if device == "cuda":
            raise ValueError(f"CUDA requested but ONNX Runtime offers only {ort.get_available_providers()}")
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
    # Idle workers must not spin: between net calls the cascade does NumPy and OpenCV work.
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return opts


class OrtNet:
    """``net(batch)`` -> tuple of NumPy outputs (prob, box[, landmarks])."""

    def __init__(self, path: str, threads: int | None = None, device: str | None = None):
        self.session = ort.InferenceSession(str(path), session_options(threads), providers=providers_for(device))

    def __call__(self, batch: np.ndarray) -> tuple[np.ndarray, ...]:
        return tuple(self.session.run(None, {"image": np.ascontiguousarray(batch, np.float32)}))
