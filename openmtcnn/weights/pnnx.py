"""Convert torch nets to ncnn with pnnx, ncnn's PyTorch converter: one ncnn folder per weight set.

The graph is the registry's plain net (native PReLU, convolution + ReLU/sigmoid fused by pnnx: ncnn's
fast paths), not the ONNX graph rewritten for ONNX Runtime. Needs torch and pnnx.
"""
from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

import torch
from torch import nn

from openmtcnn.fileio import atomic_write_bytes
from openmtcnn.weights import ncnn as folders
from openmtcnn.weights.onnx import one_face_logit

# Trace sizes: P-Net is fully convolutional, so pnnx sees two sizes and keeps the input free.
TRACE = {"pnet": ((1, 3, 64, 80), (1, 3, 48, 36)), "rnet": ((1, 3, 24, 24),), "onet": ((1, 3, 48, 48),)}


class DeployNet(nn.Module):
    """A net as ncnn runs it: normalised input (done by the caller, as ncnn apps do), face probability
    as the sigmoid of one logit (fused into the layer), box offsets, landmarks."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = one_face_logit(net).eval()

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        logit, *rest = self.net.heads(self.net.body(x))
        return (torch.sigmoid(logit), *rest)


def pnnx_executable() -> str:
    try:
        import pnnx
    except ImportError as e:
        raise ImportError("converting to ncnn needs pnnx (and PyTorch): pip install 'openmtcnn[ncnn]'") from e
    return pnnx.EXEC_PATH


def pnnx_command(net: nn.Module, stage: str, tmp: Path) -> list[str]:
    """Trace ``stage``'s deploy net into ``tmp`` and return the pnnx command that converts it there."""
    shapes = TRACE[stage]
    pt = tmp / f"{stage}.pt"
    with torch.no_grad():
        torch.jit.trace(DeployNet(net), torch.rand(*shapes[0]) * 2 - 1).save(str(pt))
    arg = lambda s: "[" + ",".join(map(str, s)) + "]f32"  # noqa: E731
    files = [f"{k}={tmp / stage}.{k}" for k in ("ncnnparam", "ncnnbin", "ncnnpy", "pnnxparam", "pnnxbin", "pnnxpy",
                                                 "pnnxonnx")]
    return [pnnx_executable(), str(pt), f"inputshape={arg(shapes[0])}", "fp16=0", "device=cpu",
            *([f"inputshape2={arg(shapes[1])}"] if len(shapes) > 1 else []), *files]


def to_ncnn(nets: dict[str, nn.Module], folder: Path) -> dict[str, list[str]]:
    """Write ``<stage>.param`` and ``<stage>.bin`` (float32 weights) of raw nets ({stage: net}) into
    ``folder``; returns each stage's output blob names (probability, boxes[, landmarks]).

    The pnnx runs (mostly loading libtorch) go side by side."""
    with tempfile.TemporaryDirectory(prefix="openmtcnn-pnnx-") as name:
        tmp, runs, outputs = Path(name), {}, {}
        try:
            for stage, net in nets.items():
                runs[stage] = subprocess.Popen(pnnx_command(net, stage, tmp), cwd=tmp, stdout=subprocess.PIPE,
                                               stderr=subprocess.STDOUT, text=True)
            for stage, run in runs.items():
                log = run.communicate()[0]
                param, binary = tmp / f"{stage}.ncnnparam", tmp / f"{stage}.ncnnbin"
                if run.returncode != 0 or not param.is_file() or not binary.is_file():
                    tail = "\n".join(log.strip().splitlines()[-8:])
                    raise RuntimeError(f"pnnx could not convert {stage} (exit code {run.returncode}):\n{tail}")
                outputs[stage] = list(folders.OUTPUTS[:3 if nets[stage].heads.landmarks is not None else 2])
                if not {folders.INPUT_BLOB, *outputs[stage]} <= set(param.read_text().split()):
                    raise RuntimeError(f"pnnx wrote {stage} with unexpected blob names; expected input "
                                       f"{folders.INPUT_BLOB!r} and outputs {outputs[stage]}")
                dest_param, dest_bin = folders.stage_files(folder, stage)
                atomic_write_bytes(dest_bin, binary.read_bytes())
                atomic_write_bytes(dest_param, param.read_bytes())
        finally:
            for run in runs.values():  # after a failure: none left writing into the folder being removed
                if run.poll() is None:
                    run.kill()
                    run.wait()
    return outputs


def write_folder(nets: dict[str, nn.Module], folder: str | Path, source: str, **extra) -> Path:
    """A float ncnn folder of raw nets ({stage: net}): the three nets, then manifest.json."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    outputs = to_ncnn(nets, folder)
    import pnnx

    info = folders.folder_info(outputs, source, "float",
                               converter={"pnnx": getattr(pnnx, "__version__", "?"), "torch": torch.__version__},
                               **extra)
    folders.write_manifest(folder, info)
    return folder


def replace_folder(tmp: Path, dest: Path) -> Path:
    """Move a finished folder into place; if another process got there first, keep theirs."""
    try:
        tmp.rename(dest)
    except OSError:
        shutil.rmtree(tmp, ignore_errors=True)
        if not (dest / "manifest.json").is_file():
            raise
    return dest
