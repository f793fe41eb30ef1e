"""Int8 quantisation of the nets: fake quantisation for calibration and QAT, export to ONNX QDQ.

One description of the int8 net serves post-training quantisation (PTQ) and quantisation-aware
training (QAT). ``prepare_qat`` turns every convolution and linear layer into a Q-layer that
fake-quantises its input (uint8, one range per tensor), its weight (int8, symmetric, one scale
per output channel, 255 levels), its bias (int32 at input scale x weight scale) and, in the
body, its output, so that ONNX Runtime runs it as an integer kernel (QLinearConv / QGemm).
PReLU, max pooling and the heads' outputs stay float. The image normalisation is folded into
the first convolution, whose input is then the image itself: exactly uint8, scale 1.

PTQ observes activation ranges on real calibration data (min/max or percentiles); QAT tracks
them by an exponential moving average of each batch's min/max while training, then freezes
them. Either way ``to_qdq_onnx`` writes the float ONNX graph with QuantizeLinear and
DequantizeLinear around each layer using the torch model's own scales, so ONNX Runtime
reproduces the fake-quantised torch model.
"""
from __future__ import annotations

import copy
import math
import os
from collections.abc import Iterable, Iterator, Sequence
from functools import partial
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from openmtcnn import weights as store
from openmtcnn.detect.image import folder_images
from openmtcnn.models.nets import MEAN, SCALE
from openmtcnn.models.registry import overrides_json

WMAX = 127  # int8 weights in [-127, 127]: symmetric, 255 levels
AMAX = 255  # uint8 activations in [0, 255]
METHODS = ("minmax", "percentile")


def round_ste(x: torch.Tensor) -> torch.Tensor:
    """Rounding whose gradient is the identity (straight-through estimator)."""
    return x + (torch.round(x) - x).detach()


def fake_quant(x: torch.Tensor, scale: torch.Tensor, zero: torch.Tensor, qmin: int, qmax: int) -> torch.Tensor:
    """Quantise then dequantise as ONNX QuantizeLinear/DequantizeLinear do; the gradient passes where not clipped."""
    q = torch.round(x / scale) + zero
    inside = ((q >= qmin) & (q <= qmax)).to(x.dtype)
    y = (torch.clamp(q, qmin, qmax) - zero) * scale
    return y.detach() + (x - x.detach()) * inside


class ActQuant(nn.Module):
    """Per-tensor uint8 fake quantisation of an activation, with its range observed and then frozen.

    Training batches move the range by an exponential moving average of their min/max (the first
    batch sets it) until ``freeze_after`` batches; in eval mode the range is fixed.
    """

    def __init__(self, momentum: float = 0.02, freeze_after: int | None = None):
        super().__init__()
        self.momentum, self.freeze_after = momentum, freeze_after
        self.register_buffer("lo", torch.tensor(0.0))
        self.register_buffer("hi", torch.tensor(0.0))
        self.register_buffer("steps", torch.tensor(0, dtype=torch.long))  # batches observed
        self.register_buffer("frozen", torch.tensor(False))
        self.enabled = True  # False: pass activations through in float (calibration)
        self.recorder: Recorder | None = None

    def qparams(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(scale, zero point) of the range widened to hold 0, as float32 tensors."""
        lo, hi = torch.clamp(self.lo, max=0.0), torch.clamp(self.hi, min=0.0)
        scale = torch.clamp((hi - lo) / AMAX, min=1e-8)
        return scale, torch.clamp(torch.round(-lo / scale), 0, AMAX)

    @torch.no_grad()
    def observe(self, x: torch.Tensor) -> None:
        lo, hi = torch.aminmax(x.detach().float())
        if int(self.steps) == 0:
            self.lo.copy_(lo), self.hi.copy_(hi)
        else:
            self.lo.lerp_(lo, self.momentum), self.hi.lerp_(hi, self.momentum)
        self.steps += 1
        if self.freeze_after and int(self.steps) >= self.freeze_after:
            self.frozen.fill_(True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.recorder is not None:
            self.recorder.add(x)
        if self.training and not bool(self.frozen):
            self.observe(x)
        if not self.enabled:
            return x
        return fake_quant(x, *self.qparams(), 0, AMAX)


class Recorder:
    """Min, max and an evenly spaced subsample of every batch an activation sees (for calibration)."""

    def __init__(self, per_batch: int = 4096):
        self.per_batch, self.lo, self.hi, self.samples = per_batch, math.inf, -math.inf, []

    def add(self, x: torch.Tensor) -> None:
        flat = x.detach().float().flatten()
        self.lo, self.hi = min(self.lo, flat.min().item()), max(self.hi, flat.max().item())
        if flat.numel() > self.per_batch:
            flat = flat[torch.linspace(0, flat.numel() - 1, self.per_batch).long()]
        self.samples.append(flat.numpy().copy())

    def range(self, method: str, percentile: float) -> tuple[float, float]:
        if method == "minmax":
            return self.lo, self.hi
        values = np.concatenate(self.samples)
        return float(np.percentile(values, 100 - percentile)), float(np.percentile(values, percentile))


class QuantLayer:
    """What Q-convolutions and Q-linear layers share: fake-quantised input, weight, bias and output."""

    weight: torch.Tensor
    bias: torch.Tensor

    def adopt(self, layer: nn.Module, **kw) -> "QuantLayer":
        """Take over ``layer``'s parameters and set up the quantisers (``setup``); returns self."""
        self.load_state_dict(layer.state_dict())
        self.setup(**kw)
        return self

    def setup(self, image_input: bool, quant_output: bool, **act) -> None:
        self.image_input, self.enabled = image_input, True
        self.act_in = None if image_input else ActQuant(**act)
        self.act_out = ActQuant(**act) if quant_output else None

    def input_qparams(self) -> tuple[torch.Tensor, torch.Tensor]:
        if self.image_input:
            return torch.tensor(1.0), torch.tensor(0.0)
        return self.act_in.qparams()

    def quant_input(self, x: torch.Tensor) -> torch.Tensor:
        if not self.image_input:
            return self.act_in(x)
        x = x / SCALE + MEAN  # undo the net's normalisation (exact: SCALE is 2^-7); it is folded into the weights
        return fake_quant(x, torch.tensor(1.0), torch.tensor(0.0), 0, AMAX) if self.enabled else x

    def folded(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Weight and bias acting on the input as quantised (the raw image for the first layer)."""
        w = self.weight
        b = self.bias if self.bias is not None else torch.zeros(w.shape[0])
        if self.image_input:
            return w * SCALE, b - MEAN * SCALE * w.sum(dim=tuple(range(1, w.dim())))
        return w, b

    def quant_params(self) -> dict[str, torch.Tensor]:
        """Integer weight/bias and every scale, as exported (float32 scales, int8/int32 values)."""
        w, b = self.folded()
        amax = w.detach().abs().amax(dim=tuple(range(1, w.dim())))
        w_scale = torch.where(amax > 0, amax / WMAX, torch.ones_like(amax))
        in_scale, in_zero = self.input_qparams()
        b_scale = in_scale * w_scale
        shape = (-1,) + (1,) * (w.dim() - 1)
        return {"w_int": torch.clamp(torch.round(w.detach() / w_scale.view(shape)), -WMAX, WMAX),
                "w_scale": w_scale, "b_int": torch.clamp(torch.round(b.detach() / b_scale), -2**31 + 1, 2**31 - 1),
                "b_scale": b_scale, "in_scale": in_scale, "in_zero": in_zero}

    def quant_weights(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Fake-quantised (weight, bias); their gradients pass straight through to the float ones."""
        w, b = self.folded()
        if not self.enabled:
            return w, b
        p = self.quant_params()
        shape = (-1,) + (1,) * (w.dim() - 1)
        return (w + (p["w_int"] * p["w_scale"].view(shape) - w).detach(),
                b + (p["b_int"] * p["b_scale"] - b).detach())

    def quant_output(self, y: torch.Tensor) -> torch.Tensor:
        return self.act_out(y) if self.act_out is not None else y

    def quantisers(self) -> list[ActQuant]:
        return [a for a in (self.act_in, self.act_out) if a is not None]


class QConv2d(nn.Conv2d, QuantLayer):
    """A Conv2d with int8 fake quantisation (see ``QuantLayer``)."""

    @classmethod
    def wrap(cls, conv: nn.Conv2d, **kw) -> QConv2d:
        return cls(conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding, conv.dilation,
                   conv.groups, conv.bias is not None, conv.padding_mode).adopt(conv, **kw)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w, b = self.quant_weights()
        return self.quant_output(self._conv_forward(self.quant_input(x), w, b))


class QLinear(nn.Linear, QuantLayer):
    """A Linear with int8 fake quantisation (see ``QuantLayer``)."""

    @classmethod
    def wrap(cls, linear: nn.Linear, **kw) -> QLinear:
        return cls(linear.in_features, linear.out_features, linear.bias is not None).adopt(linear, **kw)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w, b = self.quant_weights()
        return self.quant_output(F.linear(self.quant_input(x), w, b))


def q_layers(net: nn.Module) -> dict[str, QuantLayer]:
    return {name: m for name, m in net.named_modules() if isinstance(m, QuantLayer)}


def prepare_qat(net: nn.Module, freeze_after: int | None = None, momentum: float = 0.02,
                skip: Sequence[str] = ()) -> nn.Module:
    """The trainer's ``prepare`` hook: make every conv/linear layer of ``net`` int8 fake-quantised, in place.

    Layers whose name starts with one of ``skip`` (e.g. "body.0", "heads") stay float.
    ``freeze_after``: training batches after which the activation ranges stop moving.
    """
    if q_layers(net):
        return net
    act = {"momentum": momentum, "freeze_after": freeze_after}
    first = next(m for m in net.body if isinstance(m, (nn.Conv2d, nn.Linear)))
    for parent_name, parent in (("body", net.body), ("heads", net.heads)):
        for name, child in list(parent.named_children()):
            full = f"{parent_name}.{name}"
            if not isinstance(child, (nn.Conv2d, nn.Linear)) or any(full.startswith(s) for s in skip):
                continue
            kw = {"image_input": child is first, "quant_output": parent_name == "body", **act}
            setattr(parent, name, (QConv2d if isinstance(child, nn.Conv2d) else QLinear).wrap(child, **kw))
    return net


def set_quantised(net: nn.Module, enabled: bool) -> nn.Module:
    """Switch fake quantisation on (int8 behaviour) or off (the float net, for calibration)."""
    for layer in q_layers(net).values():
        layer.enabled = enabled
        for a in layer.quantisers():
            a.enabled = enabled
    return net


def strip_qat(net: nn.Module) -> nn.Module:
    """A float copy of a fake-quantised net: plain Conv2d/Linear with the same (unfolded) weights."""
    net = copy.deepcopy(net)
    for parent in (net.body, net.heads):
        for name, child in list(parent.named_children()):
            if isinstance(child, QConv2d):
                plain = nn.Conv2d(child.in_channels, child.out_channels, child.kernel_size, child.stride,
                                  child.padding, child.dilation, child.groups, child.bias is not None)
            elif isinstance(child, QLinear):
                plain = nn.Linear(child.in_features, child.out_features, child.bias is not None)
            else:
                continue
            plain.load_state_dict({k: v for k, v in child.state_dict().items() if k in ("weight", "bias")})
            setattr(parent, name, plain)
    return net


# ---- calibration ---------------------------------------------------------------------------------

def begin_calibration(net: nn.Module, per_batch: int = 4096) -> nn.Module:
    """Run the net in float and record what each activation quantiser sees."""
    set_quantised(net.eval(), False)
    for layer in q_layers(net).values():
        for a in layer.quantisers():
            a.recorder = Recorder(per_batch)
    return net


def end_calibration(net: nn.Module, method: str = "minmax", percentile: float = 99.99) -> nn.Module:
    """Freeze each activation range at its recorded min/max or percentiles; switch quantisation on."""
    if method not in METHODS:
        raise ValueError(f"unknown calibration method {method!r}; expected one of {METHODS}")
    for name, layer in q_layers(net).items():
        for a in layer.quantisers():
            if a.recorder is None or not a.recorder.samples:
                raise ValueError(f"layer {name} saw no calibration data")
            lo, hi = a.recorder.range(method, percentile)
            a.lo.fill_(lo), a.hi.fill_(hi), a.steps.fill_(len(a.recorder.samples)), a.frozen.fill_(True)
            a.recorder = None
    return set_quantised(net, True)


@torch.no_grad()
def calibrate(net: nn.Module, batches: Iterable, method: str = "minmax", percentile: float = 99.99) -> nn.Module:
    """PTQ of one prepared net: ranges from float inputs (NCHW arrays or tensors, 0-255)."""
    begin_calibration(net)
    for batch in batches:
        net(torch.as_tensor(np.asarray(batch, np.float32)))
    return end_calibration(net, method, percentile)


def calibration_images(folder: str | os.PathLike, count: int | None = None) -> list[Path]:
    """``count`` images spread evenly over the sorted files under ``folder`` (all when None)."""
    files = folder_images(folder)
    if count is None or count >= len(files):
        return files
    return [files[i] for i in np.unique(np.linspace(0, len(files) - 1, max(count, 1)).round().astype(int))]


def calibration_batches(weights: str | os.PathLike, images: Sequence, min_face_size: float = 20,
                        scale_factor: float = 0.709, max_crops: tuple[int, int] = (256, 64),
                        threads: int | None = 1, show_progress: bool = True) -> Iterator[tuple[str, np.ndarray]]:
    """(stage, batch) as the float cascade of ``weights`` feeds its nets on ``images``.

    P-Net: every pyramid level; R-Net: the crops of P-Net's candidates; O-Net: of R-Net's
    survivors (at most ``max_crops`` per image, evenly spaced over the candidates).
    """
    from openmtcnn import MTCNN
    from openmtcnn.detect import boxes as B
    from openmtcnn.detect.cascade import pyramid_scales
    from openmtcnn.detect.image import to_rgb
    from openmtcnn.progress import progress

    detector = MTCNN(min_face_size=min_face_size, scale_factor=scale_factor, weights=weights, threads=threads)

    def crops(rgb, integral, boxes, size, most):
        keep = np.unique(np.linspace(0, len(boxes) - 1, min(most, len(boxes))).round().astype(int))
        return B.crop_resize(rgb, B.square(boxes[keep]), size, channels_first=True, integral=integral)

    for image in progress(images, desc="calibrate", enable=show_progress):
        rgb = to_rgb(image)
        integral = B.integral_image(rgb)
        h, w = rgb.shape[:2]
        for scale in pyramid_scales(h, w, min_face_size, scale_factor):
            yield "pnet", B.area_resize(integral, math.ceil(w * scale), math.ceil(h * scale)).transpose(2, 0, 1)[None]
        found = {}  # P-Net's and R-Net's survivors, heard from the cascade
        detector.run(rgb, until="rnet", observer=lambda stage, i, c, seconds: found.__setitem__(stage, c.boxes))
        for stage, net, size, most in (("pnet", "rnet", 24, max_crops[0]), ("rnet", "onet", 48, max_crops[1])):
            if len(found[stage]):
                yield net, crops(rgb, integral, found[stage], size, most)


# ---- ONNX QDQ export -----------------------------------------------------------------------------

def to_qdq_onnx(net: nn.Module) -> bytes:
    """The ONNX of a fake-quantised net: its float graph with QuantizeLinear/DequantizeLinear at each
    fake-quantisation point, int8 weights, int32 biases, and the torch model's own scales."""
    import onnx
    from onnx import helper, numpy_helper

    from openmtcnn.weights.onnx import to_onnx_bytes

    layers = q_layers(net)
    if not layers:
        raise ValueError("not a quantised net: call prepare_qat and calibrate (or train) it first")
    for name, layer in layers.items():
        if any(int(a.steps) == 0 and not bool(a.frozen) for a in layer.quantisers()):
            raise ValueError(f"layer {name} has no activation range yet: calibrate or train the net first")
    model = onnx.load_from_string(to_onnx_bytes(strip_qat(net), optimize=False))
    graph = model.graph
    image = graph.input[0].name
    nodes, inits, shared = [], [], {}

    def const(name: str, value: np.ndarray) -> str:
        inits.append(numpy_helper.from_array(value, name))
        return name

    def qdq(x: str, scale: torch.Tensor, zero: torch.Tensor, tag: str) -> str:
        """x -> QuantizeLinear -> DequantizeLinear (uint8, per tensor); one pair per (tensor, range)."""
        s, z = np.float32(scale.item()), np.uint8(zero.item())
        key = (x, s.tobytes(), int(z))
        if key not in shared:
            s_name, z_name = const(f"{tag}.scale", np.array(s)), const(f"{tag}.zero", np.array(z))
            nodes.append(helper.make_node("QuantizeLinear", [x, s_name, z_name], [f"{tag}.q"]))
            nodes.append(helper.make_node("DequantizeLinear", [f"{tag}.q", s_name, z_name], [f"{tag}.dq"]))
            shared[key] = f"{tag}.dq"
        return shared[key]

    def dq(values: np.ndarray, scale: np.ndarray, dtype, tag: str) -> str:
        """A per-output-channel DequantizeLinear of integer values stored in the file."""
        q = const(f"{tag}.int", values.astype(dtype))
        s, z = const(f"{tag}.scale", scale.astype(np.float32)), const(f"{tag}.zero", np.zeros(len(scale), dtype))
        nodes.append(helper.make_node("DequantizeLinear", [q, s, z], [f"{tag}.dq"], axis=0))
        return f"{tag}.dq"

    for node in graph.node:
        wname = node.input[1] if node.op_type in ("Conv", "Gemm") and len(node.input) > 1 else ""
        path = wname[len("net."):-len(".weight")] if wname.startswith("net.") and wname.endswith(".weight") else ""
        layer = layers.get(path)
        if layer is None:
            nodes.append(node)
            continue
        if node.op_type == "Gemm" and {a.name: a.i for a in node.attribute}.get("transB") != 1:
            raise ValueError(f"{node.name}: expected Gemm with transB=1 (a torch Linear)")
        p = {k: v.detach().cpu().numpy() for k, v in layer.quant_params().items()}
        tag = wname[len("net."):-len(".weight")]
        x = qdq(image if layer.image_input else node.input[0], *layer.input_qparams(), f"{tag}.in")
        w = dq(p["w_int"], p["w_scale"], np.int8, f"{tag}.w")
        b = dq(p["b_int"], p["b_scale"], np.int32, f"{tag}.b")
        out = node.output[0]
        raw = f"{tag}.out_float" if layer.act_out is not None else out
        nodes.append(helper.make_node(node.op_type, [x, w, b], [raw], name=node.name,
                                      **{a.name: helper.get_attribute_value(a) for a in node.attribute}))
        if layer.act_out is not None:
            s, z = layer.act_out.qparams()
            s_name, z_name = const(f"{tag}.out.scale", np.array(np.float32(s.item()))), \
                const(f"{tag}.out.zero", np.array(np.uint8(z.item())))
            nodes.append(helper.make_node("QuantizeLinear", [raw, s_name, z_name], [f"{tag}.out.q"]))
            nodes.append(helper.make_node("DequantizeLinear", [f"{tag}.out.q", s_name, z_name], [out]))
    # keep only what the outputs need (the normalisation now lives in the first layer's weights)
    needed, kept = {o.name for o in graph.output}, []
    for node in reversed(nodes):
        if any(o in needed for o in node.output):
            kept.append(node)
            needed |= set(node.input)
    all_inits = list(graph.initializer) + inits
    del graph.node[:], graph.initializer[:]
    graph.node.extend(reversed(kept))
    graph.initializer.extend(i for i in all_inits if i.name in needed)
    onnx.checker.check_model(model)
    return model.SerializeToString()


# ---- weight sets ---------------------------------------------------------------------------------

def is_int8(weights: str | os.PathLike) -> bool:
    return bool(store.manifest(weights).get("int8"))


def float_net(weights: str | os.PathLike, stage: str) -> nn.Module:
    """A weight set's stage as a raw torch net (logits, boxes[, landmarks]) in eval mode."""
    from openmtcnn.runtime.torch import load_net

    return load_net(str(weights), stage).net.eval()


def float_state(net: nn.Module) -> dict[str, np.ndarray]:
    """The float parameters of a (possibly fake-quantised) net, keyed as the plain net's state dict."""
    return {k: v.detach().cpu().numpy() for k, v in strip_qat(net).state_dict().items()}


def quantize_weight_set(weights: str | os.PathLike, images: Sequence, out: str | os.PathLike,
                        method: str = "minmax", percentile: float = 99.99, skip: dict[str, Sequence[str]] | None = None,
                        threads: int | None = 1, command: str = "", show_progress: bool = True) -> Path:
    """PTQ of a float weight set, calibrated on ``images``; writes an int8 weight set to ``out``.

    ``skip``: per stage, layer-name prefixes kept float (e.g. {"pnet": ["body.0"]}).
    """
    if is_int8(weights):
        raise ValueError(f"weights {str(weights)!r} are int8 already: quantise the float set they were made from")
    if method not in METHODS:
        raise ValueError(f"unknown calibration method {method!r}; expected one of {METHODS}")
    if threads:
        torch.set_num_threads(int(threads))
    skip = skip or {}
    nets = {s: begin_calibration(prepare_qat(float_net(weights, s), skip=skip.get(s, ()))) for s in store.STAGES}
    with torch.no_grad():
        for stage, batch in calibration_batches(weights, images, threads=threads, show_progress=show_progress):
            nets[stage](torch.from_numpy(np.ascontiguousarray(batch)))
    onnx = {s: to_qdq_onnx(end_calibration(net, method, percentile)) for s, net in nets.items()}
    base = store.manifest(weights)
    info = {"name": Path(out).name, "models": base["models"], "int8": True, "int8_stages": list(store.STAGES),
            "source": f"weight set {weights}",
            "quantization": {"kind": "post-training static", "format": "ONNX QDQ", "weights": "int8 symmetric "
                             "per output channel", "activations": "uint8 per tensor", "method": method,
                             **({"percentile": percentile} if method == "percentile" else {}),
                             "calibration_images": len(images), "float_layers": {s: list(v) for s, v in skip.items() if v}}}
    if base.get("model_kwargs"):
        info["model_kwargs"] = base["model_kwargs"]
    if command:
        info["made_by"] = command
    info["float_weights"] = str(weights)  # the parameters stay there: no second copy
    return store.save_weight_set(out, None, onnx, info)


def export_qat(checkpoint: str | os.PathLike, out: str | os.PathLike, base: str = "published-int8",
               command: str = "") -> Path:
    """A weight set from a QAT checkpoint (int8 ONNX of its stage); the other stages come from ``base``."""
    from openmtcnn.weights.trained import load_trained

    net = load_trained(checkpoint, prepare=prepare_qat)
    stage = net.spec.stage
    base_info = store.manifest(base)
    states = {s: store.load_state(base, s) for s in store.STAGES}
    onnx = {s: store.onnx_path(base, s).read_bytes() for s in store.STAGES}
    states[stage], onnx[stage] = float_state(net), to_qdq_onnx(net)
    models = {**base_info["models"], stage: net.spec.name}
    kwargs = {**base_info.get("model_kwargs", {}), stage: overrides_json(net.overrides)}
    int8_stages = sorted(set(base_info.get("int8_stages", store.STAGES if base_info.get("int8") else ())) | {stage},
                         key=store.STAGES.index)
    info = {"name": Path(out).name, "models": models, "int8": True, "int8_stages": int8_stages,
            "sources": {s: (str(checkpoint) if s == stage else f"weight set {base}") for s in store.STAGES},
            "quantization": {"kind": f"quantisation-aware training ({stage}); other stages from {base}",
                             "format": "ONNX QDQ"}}
    if any(kwargs.values()):
        info["model_kwargs"] = {s: k for s, k in kwargs.items() if k}
    if command:
        info["made_by"] = command
    return store.save_weight_set(out, states, onnx, info)


def qat_hook(freeze_after: int | None = None, momentum: float = 0.02):
    """``prepare_qat`` with training options bound, for ``train(..., prepare=...)``."""
    return partial(prepare_qat, freeze_after=freeze_after, momentum=momentum)
