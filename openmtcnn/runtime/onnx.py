"""A net on ONNX Runtime: CPU by default, CUDA when asked for and present."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort

from openmtcnn.geometry import INPUT_SIZES
from openmtcnn.weights import WeightsError


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


_CPU_ARENA = {"on": True}


def use_cpu_arena(on: bool) -> None:
    """Whether sessions made from now on keep ONNX Runtime's CPU memory arena (on by default).

    The arena grows to the largest inputs a session has seen and never gives memory back; a
    long-running server turns it off, so that what a batch frees can go back to the system.
    """
    _CPU_ARENA["on"] = bool(on)


def session_options(threads: int | None) -> ort.SessionOptions:
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.inter_op_num_threads = 1
    if threads:
        opts.intra_op_num_threads = int(threads)
    opts.log_severity_level = 3
    opts.enable_cpu_mem_arena = _CPU_ARENA["on"]
    # Idle workers must not spin: between net calls the cascade does NumPy and OpenCV work.
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return opts


def load_session(path: str | Path, threads: int | None, device: str | None) -> ort.InferenceSession:
    """An ONNX Runtime session; a missing or damaged file is a WeightsError naming it."""
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"{path}: missing; restore the weight set (reinstall openmtcnn, or export the set again)")
    providers = providers_for(device)
    try:
        return ort.InferenceSession(str(path), session_options(threads), providers=providers)
    except Exception as e:  # ONNX Runtime's own errors (InvalidProtobuf, Fail, ...) derive from Exception only
        raise WeightsError(f"{path}: ONNX Runtime cannot load it ({e}); if the file is damaged or not an ONNX "
                           "model, restore it (reinstall openmtcnn, or export the weight set again)") from None


def suits(shape: list, stage: str) -> bool:
    """Whether an ONNX input shape (ints where fixed, names where free) is ``stage``'s: N x 3 x H x W,
    H and W free for P-Net, 24 x 24 for R-Net, 48 x 48 for O-Net."""
    if len(shape) != 4 or shape[1] != 3:
        return False
    if stage == "pnet":
        return not any(isinstance(d, int) for d in shape[2:])
    return shape[2:] == [INPUT_SIZES[stage]] * 2


def check_input(path: str | Path, stage: str, session: ort.InferenceSession) -> None:
    """Refuse a model whose input is not its stage's (e.g. rnet.onnx copied over pnet.onnx) with a WeightsError."""
    inputs = session.get_inputs()
    shape = list(inputs[0].shape) if len(inputs) == 1 else []
    if not suits(shape, stage):
        size = INPUT_SIZES[stage]
        want = "N x 3 x H x W images of any size" if stage == "pnet" else f"N x 3 x {size} x {size} crops"
        got = " x ".join(str(d) for d in shape) if shape else f"{len(inputs)} inputs"
        raise WeightsError(f"{path}: this model takes {got}, but {stage} takes {want}; is it another stage's "
                           f"file (e.g. rnet.onnx copied over pnet.onnx)? Restore {Path(path).name} of the weight set")


class OrtNet:
    """``net(batch)`` -> tuple of NumPy outputs (prob, box[, landmarks]).

    With ``stage``, the model's input is checked to be that stage's (``check_input``).
    """

    def __init__(self, path: str | Path, threads: int | None = None, device: str | None = None,
                 stage: str | None = None):
        self.session = load_session(path, threads, device)
        if stage is not None:
            check_input(path, stage, self.session)

    def __call__(self, batch: np.ndarray) -> tuple[np.ndarray, ...]:
        return tuple(self.session.run(None, {"image": np.ascontiguousarray(batch, np.float32)}))
