"""P-Net, R-Net and O-Net as published (Zhang et al. 2016), in PyTorch.

The architecture is parametrised (channel widths, activation, depthwise-separable
convolutions) so that light, large, microcontroller and pruned variants are the same
three classes with other arguments.

Every net takes float RGB images in [0, 255], NCHW, and normalises them itself,
so training, export and detection share one input convention. Each returns
``(cls_logits, box_offsets)`` plus ``landmarks`` when built with a landmark head.
"""
from __future__ import annotations

import contextlib

import torch
from torch import nn

MEAN, SCALE = 127.5, 0.0078125


def activation(kind: str, channels: int) -> nn.Module:
    """PReLU as published; ReLU for integer-only targets (it folds into the int8 clamp)."""
    if kind == "prelu":
        return nn.PReLU(channels)
    if kind == "relu":
        return nn.ReLU()
    raise ValueError(f"unknown activation {kind!r}; expected 'prelu' or 'relu'")


def conv_act(cin: int, cout: int, k: int, act: str = "prelu", separable: bool = False) -> list[nn.Module]:
    """A k x k convolution and its activation; ``separable``: depthwise k x k then pointwise 1 x 1."""
    if separable and cin > 3:
        return [nn.Conv2d(cin, cin, k, groups=cin), nn.Conv2d(cin, cout, 1), activation(act, cout)]
    return [nn.Conv2d(cin, cout, k), activation(act, cout)]


class Heads(nn.Module):
    """The three MTCNN outputs on a shared feature: face logits, box offsets, landmarks."""

    def __init__(self, cin: int, landmarks: bool, conv: bool):
        super().__init__()
        make = (lambda c: nn.Conv2d(cin, c, 1)) if conv else (lambda c: nn.Linear(cin, c))
        self.cls = make(2)
        self.box = make(4)
        self.landmarks = make(10) if landmarks else None

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        out = (self.cls(x), self.box(x))
        return out + (self.landmarks(x),) if self.landmarks is not None else out


def pnet_stem(cout: int, act: str, stem: str) -> list[nn.Module]:
    """P-Net's first layer, 4 x 4 pixels at stride 2 either way (so the net keeps its 12 x 12 window):
    "pool", as published, a 3 x 3 convolution then 2 x 2 max-pooling; "stride", one 4 x 4 convolution
    at stride 2, a quarter of the multiply-adds. At an odd side "stride" drops the partial last window."""
    if stem == "pool":
        return [*conv_act(3, cout, 3, act), nn.MaxPool2d(2, 2, ceil_mode=True)]
    if stem == "stride":
        return [nn.Conv2d(3, cout, 4, stride=2), activation(act, cout)]
    raise ValueError(f"unknown P-Net stem {stem!r}; expected 'pool' or 'stride'")


class PNet(nn.Module):
    """Proposal net: fully convolutional, 12x12 receptive field, stride 2."""

    input_size = 12

    def __init__(self, channels: tuple[int, int, int] = (10, 16, 32), landmarks: bool = False,
                 act: str = "prelu", separable: bool = False, stem: str = "pool"):
        super().__init__()
        c1, c2, c3 = channels
        self.body = nn.Sequential(
            *pnet_stem(c1, act, stem), *conv_act(c1, c2, 3, act, separable), *conv_act(c2, c3, 3, act, separable))
        self.heads = Heads(c3, landmarks, conv=True)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return self.heads(self.body((x - MEAN) * SCALE))


class RNet(nn.Module):
    """Refinement net on 24x24 crops."""

    input_size = 24

    def __init__(self, channels: tuple[int, int, int, int] = (28, 48, 64, 128), landmarks: bool = False,
                 act: str = "prelu", separable: bool = False):
        super().__init__()
        c1, c2, c3, c4 = channels
        self.body = nn.Sequential(
            *conv_act(3, c1, 3, act), nn.MaxPool2d(3, 2, ceil_mode=True),
            *conv_act(c1, c2, 3, act, separable), nn.MaxPool2d(3, 2, ceil_mode=True),
            *conv_act(c2, c3, 2, act, separable), nn.Flatten(),
            nn.Linear(c3 * 3 * 3, c4), activation(act, c4))
        self.heads = Heads(c4, landmarks, conv=False)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return self.heads(self.body((x - MEAN) * SCALE))


class ONet(nn.Module):
    """Output net on 48x48 crops; the published one also predicts five landmarks."""

    input_size = 48

    def __init__(self, channels: tuple[int, int, int, int, int] = (32, 64, 64, 128, 256),
                 landmarks: bool = True, act: str = "prelu", separable: bool = False, dropout: float = 0.0):
        super().__init__()
        c1, c2, c3, c4, c5 = channels
        # Training-only dropout on the 256-wide layer, as the published det3 has (drop5, 0.25). It sits
        # after the activation, which is the same thing (PReLU commutes with the mask) and keeps the
        # parameter names of nets without it.
        self.body = nn.Sequential(
            *conv_act(3, c1, 3, act), nn.MaxPool2d(3, 2, ceil_mode=True),
            *conv_act(c1, c2, 3, act, separable), nn.MaxPool2d(3, 2, ceil_mode=True),
            *conv_act(c2, c3, 3, act, separable), nn.MaxPool2d(2, 2, ceil_mode=True),
            *conv_act(c3, c4, 2, act, separable), nn.Flatten(),
            nn.Linear(c4 * 3 * 3, c5), activation(act, c5), *([nn.Dropout(dropout)] if dropout else []))
        self.heads = Heads(c5, landmarks, conv=False)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return self.heads(self.body((x - MEAN) * SCALE))


class Inference(nn.Module):
    """A net as the cascade runs it: face probability instead of logits."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, ...]:
        logits, *rest = self.net(image)
        if logits.shape[1] == 1:  # one logit l1 - l0 (weights.onnx.one_face_logit): softmax(l)[1] = sigmoid(l1 - l0)
            return (torch.sigmoid(logits[:, 0]), *rest)
        return (torch.softmax(logits, dim=1)[:, 1], *rest)


def exact_on_cuda(device: torch.device):
    """cuDNN in full float32 (no TF32) with deterministic kernels, on CUDA; nothing elsewhere.

    Detection then matches the CPU's answers to float rounding, and a resumed training run
    repeats an unbroken one.
    """
    if device.type != "cuda":
        return contextlib.nullcontext()
    return torch.backends.cudnn.flags(enabled=True, benchmark=False, deterministic=True, allow_tf32=False)
