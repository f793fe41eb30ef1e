"""What a variant costs: parameters, weight bytes, peak activations and MACs per frame.

Layer shapes come from one traced forward pass per net (hooks on the leaf modules), so
the estimate holds for any registered variant or pruned width without a table per net.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
from torch import nn

from openmtcnn.detect.cascade import pyramid_scales
from openmtcnn.models import INPUT_SIZES, create_model, variant_models

# Crops per frame the estimate assumes for R-Net and O-Net when none are given: measured with
# the published weights at 640x480, min face 20, on WIDER val photos (see the README).
DEFAULT_CANDIDATES = {"rnet": 300, "onet": 40}
MAX_BOXES = 512  # candidate boxes the cascade keeps at once (5 floats each)


@dataclass
class Layer:
    name: str
    kind: str
    in_elements: int
    out_elements: int
    macs: int


def trace(net: nn.Module, height: int, width: int) -> list[Layer]:
    """Every leaf layer's input/output sizes and MACs for one image of height x width."""
    layers: list[Layer] = []

    def hook(module: nn.Module, inputs, output) -> None:
        x = inputs[0]
        if isinstance(module, nn.Conv2d):
            k = module.kernel_size[0] * module.kernel_size[1]
            macs = output.numel() * (module.in_channels // module.groups) * k
        elif isinstance(module, nn.Linear):
            macs = module.in_features * module.out_features
        else:
            macs = 0
        layers.append(Layer(names[module], type(module).__name__, x[0].numel(), output[0].numel(), macs))

    names = {m: n for n, m in net.named_modules()}
    leaves = [m for m in net.modules() if not list(m.children())]
    handles = [m.register_forward_hook(hook) for m in leaves]
    try:
        with torch.no_grad():
            net.eval()(torch.zeros(1, 3, height, width))
    finally:
        for h in handles:
            h.remove()
    return layers


def weight_bytes(net: nn.Module) -> dict[str, int]:
    """Parameters and their storage: float32, and int8 (weights 1 byte; biases, slopes and a
    per-output-channel requantisation multiplier and shift 4 bytes each)."""
    params = sum(p.numel() for p in net.parameters())
    int8 = 0
    for m in net.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            out = m.weight.shape[0]
            int8 += m.weight.numel() + 4 * out + 8 * out  # weights, int32 bias, multiplier + shift
        elif isinstance(m, nn.PReLU):
            int8 += 4 * m.weight.numel()
    return {"params": params, "float32_bytes": 4 * params, "int8_bytes": int8}


IN_PLACE = ("ReLU", "PReLU", "Flatten")  # run in the buffer they read: no second buffer


def peak_activation(layers: list[Layer], bytes_per_value: int) -> int:
    """Largest input + output of one layer: the two buffers a layer-by-layer runtime holds at once."""
    return max((l.in_elements + l.out_elements) * bytes_per_value for l in layers if l.kind not in IN_PLACE)


@dataclass
class NetCost:
    stage: str
    model: str
    params: int
    float32_bytes: int
    int8_bytes: int
    macs_per_call: int  # P-Net: on the largest pyramid level; others: one crop
    peak_activation_int8: int
    peak_activation_float32: int
    calls: float  # pyramid levels for P-Net, crops for R-Net/O-Net
    macs_per_frame: int


def net_cost(net: nn.Module, stage: str, height: int, width: int, min_face_size: float, scale_factor: float,
             candidates: dict[str, int]) -> NetCost:
    name = getattr(getattr(net, "spec", None), "name", type(net).__name__)
    if stage == "pnet":
        sizes = [(math.ceil(height * s), math.ceil(width * s)) for s in pyramid_scales(height, width, min_face_size,
                                                                                    scale_factor)]
        traced = [trace(net, h, w) for h, w in sizes]
        biggest = traced[0]
        macs_frame = sum(sum(l.macs for l in t) for t in traced)
        calls = len(sizes)
    else:
        size = INPUT_SIZES[stage]
        biggest = trace(net, size, size)
        calls = candidates[stage]
        macs_frame = calls * sum(l.macs for l in biggest)
    w = weight_bytes(net)
    return NetCost(stage, name, w["params"], w["float32_bytes"], w["int8_bytes"], sum(l.macs for l in biggest),
                   peak_activation(biggest, 1), peak_activation(biggest, 4), calls, int(macs_frame))


def estimate(nets: dict[str, nn.Module] | str, width: int = 640, height: int = 480, min_face_size: float = 20,
             scale_factor: float = 0.709, candidates: dict[str, int] | None = None) -> dict:
    """Cost of a cascade at one input size: per net, and the whole cascade's flash and RAM.

    ``nets`` is a variant name (``"mcu"``) or a dict stage -> torch net (e.g. pruned nets).
    Peak RAM (int8 runtime) = the frame (RGB, 1 byte a value) + the largest pyramid level +
    the largest net's two activation buffers + the candidate boxes.
    """
    if isinstance(nets, str):
        nets = {stage: create_model(model) for stage, model in variant_models(nets).items()}
    candidates = {**DEFAULT_CANDIDATES, **(candidates or {})}
    costs = {s: net_cost(n, s, height, width, min_face_size, scale_factor, candidates) for s, n in nets.items()}
    scales = pyramid_scales(height, width, min_face_size, scale_factor)
    level = 3 * math.ceil(height * scales[0]) * math.ceil(width * scales[0]) if scales else 0
    buffers = {"frame": 3 * height * width, "pyramid_level": level, "boxes": MAX_BOXES * 5 * 4,
               "activations": max(c.peak_activation_int8 for c in costs.values())}
    return {
        "input": [width, height], "min_face_size": min_face_size, "scale_factor": scale_factor,
        "candidates": candidates,
        "nets": {s: asdict(c) for s, c in costs.items()},
        "params": sum(c.params for c in costs.values()),
        "float32_bytes": sum(c.float32_bytes for c in costs.values()),
        "int8_bytes": sum(c.int8_bytes for c in costs.values()),
        "macs_per_frame": sum(c.macs_per_frame for c in costs.values()),
        "ram_buffers_int8": buffers,
        "peak_ram_int8": sum(buffers.values()),
    }


def format_estimate(e: dict) -> str:
    """A readable Markdown table of one estimate."""
    w, h = e["input"]
    rows = [f"input {w}x{h}, min face {e['min_face_size']:g}, candidates {e['candidates']}", "",
            "| net | model | params | float32 KB | int8 KB | peak act. int8 KB | calls | MMAC/frame |",
            "|---|---|---|---|---|---|---|---|"]
    for s, c in e["nets"].items():
        rows.append(f"| {s} | {c['model']} | {c['params']:,} | {c['float32_bytes'] / 1024:.1f} | "
                    f"{c['int8_bytes'] / 1024:.1f} | {c['peak_activation_int8'] / 1024:.1f} | {c['calls']:g} | "
                    f"{c['macs_per_frame'] / 1e6:.1f} |")
    rows.append(f"| all | | {e['params']:,} | {e['float32_bytes'] / 1024:.1f} | {e['int8_bytes'] / 1024:.1f} | "
                f"peak RAM {e['peak_ram_int8'] / 1024:.1f} | | {e['macs_per_frame'] / 1e6:.1f} |")
    return "\n".join(rows)
