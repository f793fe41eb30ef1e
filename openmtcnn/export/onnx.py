"""Export a torch net to ONNX: one code path for published, trained and compressed weights."""
from __future__ import annotations

import io
import warnings
from pathlib import Path

import torch
from torch import nn

from openmtcnn.fileio import atomic_write_bytes
from openmtcnn.models.nets import Inference

OPSET = 17


def output_names(net: nn.Module) -> list[str]:
    heads = net.heads
    return ["prob", "box"] + (["landmarks"] if heads.landmarks is not None else [])


def to_onnx_bytes(net: nn.Module) -> bytes:
    """Serialise ``net`` (eval mode) with a dynamic batch; P-Nets also take any image size."""
    net = net.eval()
    size = net.spec.input_size if hasattr(net, "spec") else net.input_size
    fully_conv = size == 12
    names = output_names(net)
    axes = {"image": {0: "n", 2: "h", 3: "w"} if fully_conv else {0: "n"}}
    for name in names:
        axes[name] = {0: "n", 1: "h", 2: "w"} if fully_conv and name == "prob" else (
            {0: "n", 2: "h", 3: "w"} if fully_conv else {0: "n"})
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(Inference(net), (torch.zeros(1, 3, size, size),), buf, dynamo=False,
                          input_names=["image"], output_names=names, dynamic_axes=axes,
                          opset_version=OPSET)
    return buf.getvalue()


def export_onnx(net: nn.Module, path: str | Path) -> Path:
    path = Path(path)
    atomic_write_bytes(path, to_onnx_bytes(net))
    return path
