"""Integer-only nets: post-training int8 quantisation and a bit-exact NumPy reference of the C runtime.

The scheme (as CMSIS-NN / TFLite, with one rounding per requantisation):

- weights: int8, symmetric, one scale per output channel; biases int32;
- activations: int8, one scale per tensor, zero point -128 (every hidden layer ends in a ReLU,
  so the int8 range covers [0, max] and the ReLU is the lower clamp);
- the input is ``pixel - 128`` as int8: the nets' normalisation (x - 127.5) / 128 is then
  ``(q + 0.5) / 128``, and the 0.5 is folded into the first bias;
- requantisation: ``(acc * m + 2**(s-1)) >> s`` in 64-bit integers, m a 31-bit multiplier;
- heads give int32 fixed point in 1/4096 (``Q_HEAD``): the face logit (logit of class 1 minus
  class 0, one channel), box offsets and landmarks.

Everything after quantisation is integer arithmetic, so NumPy (int64, or float64 where sums
stay below 2**53) and C give the same integers. Calibration runs the float torch net; the
integer forward needs only NumPy.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from openmtcnn.geometry import INPUT_SIZES

Q_HEAD = 12  # heads: fixed point with 12 fraction bits
Q_BOX = 4  # box and landmark coordinates: 1/16 pixel
ACT_ZERO = -128  # zero point of every hidden activation (after a ReLU)
INPUT_SCALE, INPUT_ZERO = 1 / 128, -0.5  # normalised input = (q - INPUT_ZERO) * INPUT_SCALE
BIAS_LIMIT = 2**30  # int32 biases stay here so that accumulators never overflow
MIN_RANGE = 1e-2  # smallest activation range: keeps multipliers sane for dead channels


@dataclass
class QLayer:
    """One integer layer: k x k convolution (valid, stride 1) or fully connected (k=1 on a 1x1 map).

    ``weight`` is (cout, k, k, cin) in channels-last order; ``pool`` an optional (kernel, stride)
    max-pool (ceil mode) after it. Hidden layers give int8 with zero point ``ACT_ZERO``; a head
    (``head=True``) gives int32 in 1/4096.
    """

    name: str
    weight: np.ndarray  # int8 (cout, k, k, cin)
    bias: np.ndarray  # int32 (cout,)
    mult: np.ndarray  # int32 (cout,)
    shift: np.ndarray  # int8 (cout,), 1..62
    pool: tuple[int, int] | None = None
    fc: bool = False  # flattens its input first
    head: bool = False
    out_scale: float = 0.0  # real value of one int8 step (hidden layers)

    @property
    def k(self) -> int:
        return self.weight.shape[1]

    @property
    def cin(self) -> int:
        return self.weight.shape[3]

    @property
    def cout(self) -> int:
        return self.weight.shape[0]


@dataclass
class QNet:
    """A quantised P-, R- or O-Net: body layers then one merged head (logit, 4 box offsets[, 10 landmarks])."""

    stage: str
    input_size: int
    layers: list[QLayer]
    head: QLayer
    ranges: dict[str, float] = field(default_factory=dict)  # activation maxima used, by torch module name

    @property
    def landmarks(self) -> bool:
        return self.head.cout == 15


# ---- fixed-point arithmetic -------------------------------------------------------------------

def quantize_multiplier(real: float) -> tuple[int, int]:
    """(m, s) with real ~= m / 2**s, m a 31-bit integer, 1 <= s <= 62."""
    if real <= 0:
        return 0, 1
    frac, exp = math.frexp(real)  # real = frac * 2**exp, frac in [0.5, 1)
    m = round(frac * 2**31)
    if m == 2**31:
        m, exp = m // 2, exp + 1
    s = 31 - exp
    if s < 1:
        raise ValueError(f"requantisation multiplier {real:g} is too large for int8 arithmetic")
    if s > 62:
        m, s = m >> (s - 62), 62
    return m, s


def requantize(acc: np.ndarray, mult: np.ndarray, shift: np.ndarray) -> np.ndarray:
    """``(acc * m + 2**(s-1)) >> s`` per output channel (last axis), in int64."""
    mult, shift = mult.astype(np.int64), shift.astype(np.int64)
    return (acc.astype(np.int64) * mult + (np.int64(1) << (shift - 1))) >> shift


# ---- integer forward --------------------------------------------------------------------------

def exact_matmul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Integer matrix product through float64 BLAS: exact while every sum stays below 2**53."""
    return np.rint(a.astype(np.float64) @ b.astype(np.float64)).astype(np.int64)


def pooled_size(n: int, k: int, s: int) -> int:
    """Output length of a max-pool in ceil mode (no padding), as torch computes it."""
    return -(-(n - k) // s) + 1


def max_pool(x: np.ndarray, k: int, s: int) -> np.ndarray:
    """Max-pool (N, H, W, C) int8 in ceil mode: windows past the edge see only what is inside."""
    n, h, w, c = x.shape
    ho, wo = pooled_size(h, k, s), pooled_size(w, k, s)
    padded = np.full((n, (ho - 1) * s + k, (wo - 1) * s + k, c), -128, np.int8)
    padded[:, :h, :w] = x
    win = np.lib.stride_tricks.sliding_window_view(padded, (k, k), axis=(1, 2))[:, ::s, ::s]
    return win.max(axis=(4, 5))


def layer_forward(x: np.ndarray, layer: QLayer) -> np.ndarray:
    """One layer on (N, H, W, C) int8: int8 activations, or int64 head values in 1/4096."""
    if layer.fc:
        x = x.reshape(len(x), 1, 1, -1)
    n, h, w, c = x.shape
    k = layer.k
    win = np.lib.stride_tricks.sliding_window_view(x, (k, k), axis=(1, 2))  # (N, Ho, Wo, C, k, k)
    cols = win.transpose(0, 1, 2, 4, 5, 3).reshape(-1, k * k * c)
    acc = exact_matmul(cols, layer.weight.reshape(layer.cout, -1).T) + layer.bias
    if np.abs(acc).max(initial=0) >= 2**31:
        raise OverflowError(f"{layer.name}: accumulator outside int32")
    v = requantize(acc, layer.mult, layer.shift).reshape(n, h - k + 1, w - k + 1, layer.cout)
    if layer.head:
        return np.clip(v, -BIAS_LIMIT, BIAS_LIMIT)
    y = np.clip(v + ACT_ZERO, -128, 127).astype(np.int8)
    return max_pool(y, *layer.pool) if layer.pool else y


def forward(qnet: QNet, images: np.ndarray) -> np.ndarray:
    """Integer outputs of a net on uint8 RGB images (N, H, W, 3): int64 in 1/4096.

    P-Net: (N, H', W', 5); R-Net (N, 5); O-Net (N, 15). Channels: face logit, 4 box offsets,
    then 5 landmark x and 5 landmark y (O-Net).
    """
    x = (images.astype(np.int16) - 128).astype(np.int8)
    for layer in qnet.layers:
        x = layer_forward(x, layer)
    if qnet.stage != "pnet":
        x = x.reshape(len(x), 1, 1, -1)
    out = layer_forward(x, qnet.head)
    return out if qnet.stage == "pnet" else out[:, 0, 0]


def dequantize(out: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """(face probability, box offsets, landmarks or None) from integer head outputs, as the float nets give.

    Channels move to axis 1 (NCHW for P-Net) to match the float nets' layout.
    """
    real = out.astype(np.float64) / 2**Q_HEAD
    prob = 1 / (1 + np.exp(-real[..., 0]))
    moved = np.moveaxis(real, -1, 1)
    return prob, moved[:, 1:5], (moved[:, 5:15] if out.shape[-1] == 15 else None)


def predict(qnet: QNet, images: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """The integer net on uint8 RGB images (N, H, W, 3), dequantised: (prob, box, landmarks) as the float nets give."""
    return dequantize(forward(qnet, images))


# ---- quantisation -----------------------------------------------------------------------------

@dataclass
class FloatLayer:
    """A conv or linear layer of a float net, with what follows it (ReLU, pool, flatten shape)."""

    name: str
    weight: np.ndarray  # (cout, k, k, cin) channels last
    bias: np.ndarray
    pool: tuple[int, int] | None = None
    fc: bool = False


def parse_net(net, stage: str) -> tuple[list[FloatLayer], FloatLayer]:
    """The body layers and merged head of a ReLU, non-separable MTCNN net (as the mcu family)."""
    from torch import nn

    size = INPUT_SIZES[stage]
    layers: list[FloatLayer] = []
    h = w = size
    channels, flat_shape = 3, None
    mods = list(net.body.named_children())
    for i, (name, m) in enumerate(mods):
        if isinstance(m, nn.Conv2d):
            if m.groups != 1 or m.stride != (1, 1) or m.padding != (0, 0) or m.dilation != (1, 1):
                raise ValueError(f"{stage} {name}: only plain valid convolutions convert to int8 C "
                                 "(no groups, stride, padding)")
            wt = m.weight.detach().numpy().transpose(0, 2, 3, 1)
            layers.append(FloatLayer(f"body.{name}", wt, m.bias.detach().numpy()))
            h, w, channels = h - m.kernel_size[0] + 1, w - m.kernel_size[1] + 1, m.out_channels
        elif isinstance(m, nn.Linear):
            if flat_shape is None:
                raise ValueError(f"{stage} {name}: a linear layer must follow a flatten")
            c, fh, fw = flat_shape  # torch flattens C, H, W; the integer nets keep H, W, C
            wt = m.weight.detach().numpy().reshape(-1, c, fh, fw).transpose(0, 2, 3, 1).reshape(m.out_features, -1)
            layers.append(FloatLayer(f"body.{name}", wt[:, None, None, :], m.bias.detach().numpy(), fc=True))
            flat_shape = (m.out_features, 1, 1)
        elif isinstance(m, nn.ReLU):
            if not layers or not isinstance(mods[i - 1][1], (nn.Conv2d, nn.Linear)):
                raise ValueError(f"{stage} {name}: a ReLU must follow a convolution or linear layer")
        elif isinstance(m, nn.MaxPool2d):
            k, s = m.kernel_size, m.stride
            if not (isinstance(k, int) and isinstance(s, int) and m.ceil_mode and m.padding == 0):
                raise ValueError(f"{stage} {name}: only square ceil-mode max-pools without padding convert")
            layers[-1].pool = (k, s)
            h, w = pooled_size(h, k, s), pooled_size(w, k, s)
        elif isinstance(m, nn.Flatten):
            flat_shape = (channels, h, w)
        else:
            raise ValueError(f"{stage} {name}: {type(m).__name__} does not convert to int8 C; the int8 export "  # noqa: TRY004
                             "needs act='relu', separable=False nets (the mcu family)")
    for i, (name, m) in enumerate(mods):  # every conv / linear needs its ReLU
        if isinstance(m, (nn.Conv2d, nn.Linear)) and (i + 1 >= len(mods) or not isinstance(mods[i + 1][1], nn.ReLU)):
            raise ValueError(f"{stage} {name}: every hidden layer must end in a ReLU")
    heads = net.heads
    if stage == "onet" and heads.landmarks is None:
        raise ValueError("onet: the int8 cascade needs an O-Net with a landmark head")
    parts = [heads.cls, heads.box] + ([heads.landmarks] if stage == "onet" and heads.landmarks is not None else [])
    ws = [p.weight.detach().numpy().reshape(p.weight.shape[0], -1) for p in parts]
    bs = [p.bias.detach().numpy() for p in parts]
    ws[0], bs[0] = ws[0][1:2] - ws[0][0:1], bs[0][1:2] - bs[0][0:1]  # face logit: class 1 minus class 0
    head = FloatLayer("heads", np.concatenate(ws)[:, None, None, :], np.concatenate(bs), fc=stage != "pnet")
    return layers, head


def quantize_weights(w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Symmetric int8 weights with one scale per output channel (all-zero channels get scale 1)."""
    flat = w.reshape(len(w), -1)
    peak = np.abs(flat).max(axis=1)
    scale = np.where(peak > 0, peak / 127, 1.0)
    q = np.clip(np.rint(flat / scale[:, None]), -127, 127).astype(np.int8)
    return q.reshape(w.shape), scale


def quantize_layer(f: FloatLayer, in_scale: float, in_zero: float, out_range: float | None) -> QLayer:
    """Integer weights, folded bias and requantisation of one layer; ``out_range`` None: a head."""
    wq, ws = quantize_weights(f.weight.astype(np.float64))
    real_in = in_scale * ws
    folded = f.bias.astype(np.float64) / real_in - in_zero * wq.reshape(len(wq), -1).sum(axis=1)
    bias = np.clip(np.rint(folded), -BIAS_LIMIT, BIAS_LIMIT).astype(np.int32)
    out_scale = 2.0**-Q_HEAD if out_range is None else max(out_range, MIN_RANGE) / 255
    ms = [quantize_multiplier(r) for r in real_in / out_scale]
    return QLayer(f.name, wq, bias, np.array([m for m, _ in ms], np.int32), np.array([s for _, s in ms], np.int8),
                  f.pool, f.fc, out_range is None, 0.0 if out_range is None else out_scale)


def quantize_net(net, stage: str, ranges: dict[str, float]) -> QNet:
    """Quantise a float net given the maximum of each hidden layer's (post-ReLU) output, by module name.

    ``ranges`` can come from ``calibrate`` or from outside (e.g. quantisation-aware training):
    {"body.0": 3.1, "body.3": 5.2, ...}; a (low, high) pair is accepted too (low is 0 after a ReLU).
    """
    layers, head = parse_net(net, stage)
    hi = {k: float(v[1] if isinstance(v, (tuple, list)) else v) for k, v in ranges.items()}
    missing = [f.name for f in layers if f.name not in hi]
    if missing:
        raise ValueError(f"{stage}: no activation range for {', '.join(missing)}")
    q, scale, zero = [], INPUT_SCALE, INPUT_ZERO
    for f in layers:
        q.append(quantize_layer(f, scale, zero, hi[f.name]))
        scale, zero = q[-1].out_scale, ACT_ZERO
    size = INPUT_SIZES[stage]
    return QNet(stage, size, q, quantize_layer(head, scale, zero, None), {f.name: hi[f.name] for f in layers})


def calibrate(net, stage: str, batches, percentile: float = 99.99) -> dict[str, float]:
    """Activation maxima of every hidden layer over calibration inputs (uint8 NHWC batches, deterministic).

    The ``percentile`` of each post-ReLU output (zeros included) keeps rare outliers from
    stretching the int8 range.
    """
    import torch
    from torch import nn

    names = [f.name for f in parse_net(net, stage)[0]]
    relu_of = {}
    body = list(net.body.named_children())
    for i, (name, m) in enumerate(body):
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            relu_of[body[i + 1][1]] = f"body.{name}"
    seen: dict[str, list[np.ndarray]] = {n: [] for n in names}
    rng = np.random.default_rng(0)

    def hook(module, inputs, output) -> None:
        v = output.detach().numpy().ravel()
        if v.size > 200_000:  # a fixed random subset bounds memory on large maps
            v = v[rng.choice(v.size, 200_000, replace=False)]
        seen[relu_of[module]].append(v)

    handles = [m.register_forward_hook(hook) for m in relu_of]
    try:
        with torch.no_grad():
            net.eval()
            for batch in batches:
                net(torch.from_numpy(np.ascontiguousarray(batch.transpose(0, 3, 1, 2), np.float32)))
    finally:
        for h in handles:
            h.remove()
    if not all(seen[n] for n in names):
        raise ValueError(f"{stage}: no calibration data")
    return {n: float(np.percentile(np.concatenate(seen[n]), percentile)) for n in names}


# ---- storage ----------------------------------------------------------------------------------

def qnet_arrays(qnet: QNet) -> dict[str, np.ndarray]:
    """A net as flat arrays (for pickle-free npz files)."""
    out = {f"{qnet.stage}/ranges": np.array(list(qnet.ranges.values()), np.float64),
           f"{qnet.stage}/range_names": np.array(list(qnet.ranges), dtype=str)}
    for i, layer in enumerate(qnet.layers + [qnet.head]):
        p = f"{qnet.stage}/{i}/"
        out.update({p + "weight": layer.weight, p + "bias": layer.bias, p + "mult": layer.mult,
                    p + "shift": layer.shift, p + "name": np.array(layer.name),
                    p + "meta": np.array([*(layer.pool or (0, 0)), layer.fc, layer.head], np.int64),
                    p + "out_scale": np.array(layer.out_scale)})
    return out


def qnet_from_arrays(arrays: dict[str, np.ndarray], stage: str) -> QNet:
    """The inverse of ``qnet_arrays``."""
    layers, i = [], 0
    while f"{stage}/{i}/weight" in arrays:
        p = f"{stage}/{i}/"
        pk, ps, fc, head = (int(v) for v in arrays[p + "meta"])
        layers.append(QLayer(str(arrays[p + "name"]), arrays[p + "weight"].astype(np.int8),
                             arrays[p + "bias"].astype(np.int32), arrays[p + "mult"].astype(np.int32),
                             arrays[p + "shift"].astype(np.int8), (pk, ps) if pk else None, bool(fc), bool(head),
                             float(arrays[p + "out_scale"])))
        i += 1
    if not layers:
        raise ValueError(f"no {stage} in the quantised model")
    ranges = dict(zip((str(n) for n in arrays[f"{stage}/range_names"]), arrays[f"{stage}/ranges"].tolist()))
    return QNet(stage, INPUT_SIZES[stage], layers[:-1], layers[-1], ranges)
