"""Export a torch net to ONNX: one code path for published, trained and compressed weights.

Needs torch: nothing on the detection path imports this module.
"""
from __future__ import annotations

import copy
import io
import warnings
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from openmtcnn.fileio import atomic_write_bytes
from openmtcnn.models.nets import Inference

OPSET = 17


def output_names(net: nn.Module) -> list[str]:
    heads = net.heads
    return ["prob", "box"] + (["landmarks"] if heads.landmarks is not None else [])


class SplitPReLU(nn.Module):
    """PReLU written as ReLU plus depthwise 1x1 convolutions: the same numbers, bit for bit.

    prelu(y) = relu(y) + (-a) * relu(-y). ONNX Runtime's CPU PRelu kernel is slow (half of
    R-Net's time); these ops stay in its blocked NCHWc layout and fuse (Conv+Relu, Conv+Add).
    Each product has one non-zero term, so no rounding differs from PReLU's.
    """

    def __init__(self, prelu: nn.PReLU):
        super().__init__()
        slope = prelu.weight.detach().clone()
        self.register_buffer("slope", slope)  # fully connected layers: small, elementwise ops are fine
        self.register_buffer("minus_one", -torch.ones(len(slope), 1, 1, 1))
        self.register_buffer("minus_slope", -slope.view(-1, 1, 1, 1))

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        if y.dim() == 2:
            return F.relu(y) + self.slope * torch.clamp(y, max=0)
        c = len(self.slope)
        negative = F.relu(F.conv2d(y, self.minus_one, groups=c))
        return F.relu(y) + F.conv2d(negative, self.minus_slope, groups=c)


def split_prelus(net: nn.Module) -> nn.Module:
    """A copy of ``net`` with every PReLU replaced by ``SplitPReLU``."""
    net = copy.deepcopy(net)
    for parent in list(net.modules()):
        for name, child in parent.named_children():
            if isinstance(child, nn.PReLU):
                setattr(parent, name, SplitPReLU(child))
    return net


class PoolThenPReLU(nn.Module):
    """Convolution, PReLU, max-pool computed as convolution, max-pool, PReLU: the same numbers, bit for bit.

    The activation then runs on the pooled map, a quarter of the elements, where it costs
    several passes over memory (``SplitPReLU``). Where a slope a >= 0, PReLU is monotone and
    commutes with max. Where a < 0 it is V-shaped, so a window's largest value comes from its
    largest or its smallest input: max(relu(max y), -a * relu(-min y)). The convolution also
    gives -y for those channels (negated weights: the same sums, negated exactly), so one
    max-pool yields max y and -min y, and a sparse 1x1 convolution moves -a * relu(-min y)
    back onto channel c; elsewhere it gives -1e30, which max ignores.
    """

    def __init__(self, conv: nn.Conv2d, prelu: nn.PReLU, pool: nn.MaxPool2d, multiple: int = 16):
        super().__init__()
        slope = prelu.weight.detach()
        c = conv.out_channels
        negative = torch.nonzero(slope < 0).flatten()
        k = len(negative)
        self.width = width = -(-(c + k) // multiple) * multiple
        w, b = conv.weight.detach(), conv.bias.detach()
        self.conv = nn.Conv2d(conv.in_channels, width, conv.kernel_size, conv.stride, conv.padding)
        with torch.no_grad():
            self.conv.weight.copy_(torch.cat([w, -w[negative], w.new_zeros(width - c - k, *w.shape[1:])]))
            self.conv.bias.copy_(torch.cat([b, -b[negative], b.new_zeros(width - c - k)]))
        self.pool = pool
        padded = torch.cat([slope, slope.new_zeros(width - c)])  # channels past c: relu(-min y) or 0, read by nothing
        self.register_buffer("minus_one", -torch.ones(width, 1, 1, 1))
        self.register_buffer("minus_slope", -padded.view(-1, 1, 1, 1))
        self.has_negative = k > 0
        select, bias = torch.zeros(width, width, 1, 1), torch.full((width,), -1e30)
        select[negative, c + torch.arange(k), 0, 0] = -slope[negative]
        bias[negative] = 0
        self.register_buffer("select", select)
        self.register_buffer("select_bias", bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = self.pool(self.conv(x))
        positive = F.relu(pooled)  # shared by both terms: as in SplitPReLU, one product is non-zero
        out = positive + F.conv2d(F.relu(F.conv2d(pooled, self.minus_one, groups=self.width)),
                                  self.minus_slope, groups=self.width)
        if not self.has_negative:
            return out
        return torch.maximum(out, F.conv2d(positive, self.select, self.select_bias))


def pool_before_prelu(net: nn.Module) -> nn.Module:
    """A copy of a fully convolutional ``net`` (P-Net) with conv-PReLU-pool blocks as ``PoolThenPReLU``.

    Only P-Nets: on R-Net's and O-Net's small maps the extra operations cost more than they
    save (ONNX Runtime, 2 threads: published P-Net on a 1152x648 level 24.8 -> 20.6 ms; R-Net
    on 64 crops 0.91 -> 1.55 ms). A block is rewritten when the next weighted layer is a plain
    convolution, which then reads the wider map with zero weights on the extra channels.
    """
    net = copy.deepcopy(net)
    if not isinstance(net.heads.cls, nn.Conv2d):
        return net
    layers, out, i = list(net.body), [], 0
    while i < len(layers):
        block = layers[i:i + 3]
        nxt = next((m for m in layers[i + 3:] if isinstance(m, (nn.Conv2d, nn.Linear))), None)
        if (len(block) == 3 and isinstance(block[0], nn.Conv2d) and block[0].groups == 1
                and isinstance(block[1], nn.PReLU) and isinstance(block[2], nn.MaxPool2d)
                and isinstance(nxt, nn.Conv2d) and nxt.groups == 1):
            pooled = PoolThenPReLU(*block)
            extra = pooled.width - nxt.in_channels
            with torch.no_grad():
                nxt.weight = nn.Parameter(torch.cat([nxt.weight, nxt.weight.new_zeros(
                    nxt.weight.shape[0], extra, *nxt.weight.shape[2:])], 1))
            nxt.in_channels = pooled.width
            out.append(pooled)
            i += 3
        else:
            out.append(layers[i])
            i += 1
    net.body = nn.Sequential(*out)
    return net


def one_face_logit(net: nn.Module) -> nn.Module:
    """A copy of ``net`` whose face head gives one logit, l_face - l_background.

    softmax(l)[1] = sigmoid(l1 - l0): one output channel and a Sigmoid that ONNX Runtime fuses
    into the convolution, instead of a Softmax across channels (a tenth of P-Net's time).
    """
    net = copy.deepcopy(net)
    cls = net.heads.cls
    gap = nn.Conv2d(cls.in_channels, 1, 1) if isinstance(cls, nn.Conv2d) else nn.Linear(cls.in_features, 1)
    with torch.no_grad():
        gap.weight.copy_(cls.weight[1:2] - cls.weight[0:1])
        gap.bias.copy_(cls.bias[1:2] - cls.bias[0:1])
    net.heads.cls = gap
    return net


def for_runtime(net: nn.Module) -> nn.Module:
    """The same function written for speed on ONNX Runtime's CPU (see each step)."""
    return one_face_logit(split_prelus(pad_channels(pool_before_prelu(net))))


def to_onnx_bytes(net: nn.Module, optimize: bool = True) -> bytes:
    """Serialise ``net`` (eval mode) with a dynamic batch; P-Nets also take any image size.

    ``optimize`` writes the graph of ``for_runtime`` (same outputs, up to float rounding in the
    face probability); int8 export keeps the plain graph, whose nodes it maps to layers.
    """
    net = net.eval()
    size = net.spec.input_size if hasattr(net, "spec") else net.input_size
    if optimize:
        net = for_runtime(net)
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


def pad_channels(net: nn.Module, multiple: int = 16) -> nn.Module:
    """A copy of ``net`` whose hidden conv widths are rounded up to ``multiple``: the same outputs.

    The extra channels have zero weights and bias, so they hold zeros (PReLU(0) = 0, max-pool of
    zeros is 0) and the next convolution reads them with zero weights. ONNX Runtime's blocked
    NCHWc layout (16 channels with AVX-512) then keeps the whole body blocked.
    """
    net = copy.deepcopy(net)
    layers = list(net.body)
    convs = [i for i, m in enumerate(layers) if isinstance(m, (nn.Conv2d, nn.Linear))]
    for i, j in zip(convs, convs[1:]):
        conv, nxt = layers[i], layers[j]
        if not (isinstance(conv, nn.Conv2d) and isinstance(nxt, nn.Conv2d) and conv.groups == nxt.groups == 1):
            continue
        extra = -conv.out_channels % multiple
        if extra == 0:
            continue
        with torch.no_grad():
            conv.weight = nn.Parameter(torch.cat([conv.weight, conv.weight.new_zeros(extra, *conv.weight.shape[1:])]))
            conv.bias = nn.Parameter(torch.cat([conv.bias, conv.bias.new_zeros(extra)]))
            nxt.weight = nn.Parameter(torch.cat([nxt.weight, nxt.weight.new_zeros(nxt.weight.shape[0], extra,
                                                                                  *nxt.weight.shape[2:])], 1))
            for m in layers[i + 1:j]:
                if isinstance(m, nn.PReLU):
                    m.weight = nn.Parameter(torch.cat([m.weight, m.weight.new_zeros(extra)]))
        conv.out_channels += extra
        nxt.in_channels += extra
    return net
