"""ncnn's int8 post-training quantisation (its ``ncnn2table`` + ``ncnn2int8`` tools), in Python.

The ncnn and pnnx wheels ship neither tool, so this does what they do, on the float folder's files:
weight scales per output channel (127 / |w|max; 31 for 3x3 stride-1 convolutions, which ncnn's int8
Winograd needs), input scales by ncnn2table's KL method on the real inputs each layer sees, then
int8 weights (tag 0x000D4B38) and the scales written into the ``.bin``, ``8=`` into the ``.param``.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

WEIGHTED = ("Convolution", "ConvolutionDepthWise", "InnerProduct")
PLAIN = {"Input", "Pooling", "Split", "Flatten", "ReLU", "Sigmoid", "Softmax", "Crop", "Reshape", "Dropout",
         "Noop", "Concat", "Slice", "Clip", "Permute", "Squeeze", "ExpandDims", "BinaryOp", "UnaryOp"}
TAG_FP32, TAG_FP16, TAG_INT8 = 0, 0x01306B47, 0x000D4B38
BINS, TARGET_BINS, KL_EPS = 2048, 128, 1e-4  # ncnn2table's KL settings


@dataclass
class Layer:
    """One line of a .param file and its weights from the .bin (weight, bias, PReLU slopes)."""

    type: str
    name: str
    bottoms: list[str]
    tokens: list[str]  # the line as written
    params: dict[int, str] = field(default_factory=dict)
    arrays: list[np.ndarray] = field(default_factory=list)

    def get(self, key: int, default: int = 0) -> int:
        """An integer parameter (ncnn's ``k=v``), or ``default``."""
        return int(self.params.get(key, default))


def parse_param(text: str) -> list[Layer]:
    lines = [line.split() for line in text.splitlines() if line.strip()]
    if not lines or lines[0] != ["7767517"]:
        raise ValueError("not an ncnn .param file (no 7767517 magic on its first line)")
    layers = []
    for tokens in lines[2:]:
        n_in = int(tokens[2])
        params = dict(t.split("=", 1) for t in tokens[4 + n_in + int(tokens[3]):])
        layers.append(Layer(tokens[0], tokens[1], tokens[4:4 + n_in], tokens, {int(k): v for k, v in params.items()}))
    return layers


def read_arrays(layers: list[Layer], data: bytes) -> None:
    """Fill each layer's ``arrays`` from the .bin, in the order ncnn's ``load_model`` reads them."""
    pos = 0

    def raw(count: int) -> np.ndarray:
        nonlocal pos
        a = np.frombuffer(data, np.float32, count, pos).copy()
        pos += 4 * count
        return a

    def tagged(count: int) -> np.ndarray:
        nonlocal pos
        (tag,) = struct.unpack_from("<I", data, pos)
        pos += 4
        if tag == TAG_FP32:
            return raw(count)
        if tag == TAG_FP16:
            a = np.frombuffer(data, np.float16, count, pos).astype(np.float32)
            pos += -(-2 * count // 4) * 4
            return a
        raise ValueError(f"weights stored with tag {tag:#x}: only float32 and float16 float folders can be quantised")

    for layer in layers:
        if layer.type in ("Convolution", "ConvolutionDepthWise"):
            layer.arrays = [tagged(layer.get(6)), *([raw(layer.get(0))] if layer.get(5) else [])]
        elif layer.type == "InnerProduct":
            layer.arrays = [tagged(layer.get(2)), *([raw(layer.get(0))] if layer.get(1) else [])]
        elif layer.type == "PReLU":
            layer.arrays = [raw(layer.get(0, 1))]
        elif layer.type not in PLAIN:
            raise ValueError(f"ncnn layer type {layer.type} ({layer.name}) is not one this quantiser knows")
        if layer.type in WEIGHTED and layer.get(8):
            raise ValueError(f"{layer.name} is int8 already: quantise the float folder")
    if pos != len(data):
        raise ValueError(f"the .bin holds {len(data)} bytes but its .param describes {pos}")


def weight_scales(layer: Layer) -> np.ndarray:
    """ncnn2table's weight scales: per output channel (per group for depthwise), 127 / |w|max (31 / |w|max
    for 3x3 stride-1 convolutions)."""
    w = layer.arrays[0]
    groups = layer.get(7, 1) if layer.type == "ConvolutionDepthWise" else layer.get(0)
    absmax = np.abs(w.reshape(groups, -1)).max(axis=1)
    get = layer.get
    kernel, dilation, stride = ((get(k, d), get(k + 10, get(k, d))) for k, d in ((1, 0), (2, 1), (3, 1)))
    six_bit = layer.type == "Convolution" and kernel == (3, 3) and dilation == stride == (1, 1)
    scale = (31 if six_bit else 127) / np.maximum(absmax.astype(np.float64), 1e-300)
    # an all-zero (dead) channel: any finite scale; ncnn2table's would be infinite
    return np.where((absmax > 0) & (scale < np.finfo(np.float32).max), scale, 1).astype(np.float32)


def to_int8(x: np.ndarray) -> np.ndarray:
    """ncnn's float2int8: round half away from zero, clamp to [-127, 127]."""
    return np.clip(np.trunc(x + np.copysign(0.5, x)), -127, 127).astype(np.int8)


def kl_threshold(histogram: np.ndarray, rows: int = 128) -> int:
    """ncnn2table's KL method: the bin count t (of ``BINS``) whose clipping at t and quantisation to 128
    levels, spread back over the t bins, departs least from the histogram; all t at once, ``rows`` a time."""
    h = np.asarray(histogram, np.float64) / max(float(np.sum(histogram)), 1.0)
    cum, h0 = np.concatenate([[0.0], np.cumsum(h)]), np.append(h, 0.0)
    best, best_kl = TARGET_BINS, np.inf
    for start in range(TARGET_BINS, BINS, rows):
        t = np.arange(start, min(start + rows, BINS))[:, None]
        k = np.arange(t[-1, 0] + 1, dtype=float)  # the original bins' edges, up to the largest t here
        per = t / TARGET_BINS
        edges = np.arange(TARGET_BINS + 1) * per  # the 128 bins' edges, in original bins
        lo = np.minimum(np.floor(edges).astype(int), t)
        mass = cum[lo] + (edges - lo) * np.where(lo < t, h0[np.minimum(lo, BINS)], 0)  # h summed up to each edge
        q = np.diff(mass, axis=1) / per  # each quantised bin's mean density
        # spread back over the original bins: the integral of the step function q up to each bin edge
        j = np.minimum((k / per).astype(int), TARGET_BINS - 1)
        steps = np.concatenate([np.zeros((len(t), 1)), np.cumsum(q * per, axis=1)], axis=1)
        spread = np.take_along_axis(steps, j, 1) + (k - j * per) * np.take_along_axis(q, j, 1)
        inside = k[:-1] < t
        expand = np.diff(spread, axis=1) + KL_EPS
        clip = h[None, :len(k) - 1] + KL_EPS + np.where(k[:-1] == t - 1, 1 - cum[t], 0)  # tail piled on the last
        kl = np.where(inside, clip * np.log(clip / np.where(inside, expand, 1)), 0).sum(axis=1)
        i = int(np.argmin(kl))
        if kl[i] < best_kl:
            best, best_kl = int(t[i, 0]), float(kl[i])
    return best


@dataclass
class BlobStats:
    """|x|max, then a histogram of |x| over [0, |x|max] (zeros left out), as ncnn2table counts them."""

    absmax: float = 0.0
    histogram: np.ndarray = field(default_factory=lambda: np.zeros(BINS, np.int64))

    def scale(self) -> float:
        if self.absmax == 0 or self.histogram.sum() == 0:
            return 1.0
        threshold = (kl_threshold(self.histogram) + 0.5) * self.absmax / BINS
        return 127 / threshold


class Calibrator:
    """ncnn2table's statistics of one float net: ``add(batch)`` over the calibration inputs once for the
    maxima, then ``add(batch, histogram=True)`` over the same inputs; then ``scales()``, by layer name."""

    def __init__(self, param: Path, binary: Path, layers: list[Layer], input_blob: str,
                 prepare: Callable[[np.ndarray], np.ndarray]):
        import ncnn

        self.net, self.mat = ncnn.Net(), ncnn.Mat
        self.net.opt.use_vulkan_compute = False
        self.net.opt.num_threads = 1  # small inputs one by one: threads would only wait for each other
        self.net.opt.use_fp16_storage = self.net.opt.use_fp16_packed = self.net.opt.use_fp16_arithmetic = False
        if self.net.load_param(str(param)) != 0 or self.net.load_model(str(binary)) != 0:
            raise ValueError(f"ncnn cannot load {param}")
        self.weighted = [layer for layer in layers if layer.type in WEIGHTED]
        self.stats = {layer.name: BlobStats() for layer in self.weighted}
        self.input_blob, self.prepare = input_blob, prepare

    def add(self, batch: np.ndarray, histogram: bool = False) -> None:
        for chw in np.asarray(batch, np.float32):
            x = np.ascontiguousarray(self.prepare(chw))  # ncnn.Mat reads it in place, ignoring strides
            ex = self.net.create_extractor()
            ex.set_light_mode(False)  # keep every blob: each layer's input is read, none computed twice
            ex.input(self.input_blob, self.mat(x))
            for layer in self.weighted:
                ret, out = ex.extract(layer.bottoms[0])
                if ret != 0:
                    raise RuntimeError(f"ncnn could not compute {layer.bottoms[0]} (code {ret})")
                a, s = np.abs(np.array(out)).ravel(), self.stats[layer.name]
                if not histogram:
                    s.absmax = max(s.absmax, float(a.max(initial=0)))
                elif s.absmax > 0:
                    a = a[a != 0]
                    s.histogram += np.bincount(np.minimum((a / s.absmax * BINS).astype(int), BINS - 1), minlength=BINS)

    def scales(self) -> dict[str, float]:
        """Input scale of each weighted layer; layers reading one blob (the heads after a Split) share its search."""
        done: dict[bytes, float] = {}
        scales = {}
        for name, s in self.stats.items():
            key = np.float64(s.absmax).tobytes() + s.histogram.tobytes()
            scales[name] = done[key] = done[key] if key in done else s.scale()
        return scales


def quantised(layers: list[Layer], scales: dict[str, float]) -> tuple[str, bytes, dict]:
    """The int8 .param text and .bin bytes (what ncnn2int8 writes), and the scales used (the table)."""
    lines, chunks, table = ["7767517"], [], {}
    blobs = {t for layer in layers for t in layer.tokens[4:4 + int(layer.tokens[2]) + int(layer.tokens[3])]}
    lines.append(f"{len(layers)} {len(blobs)}")
    for layer in layers:
        tokens = list(layer.tokens)
        if layer.type in WEIGHTED:
            w_scales = weight_scales(layer)
            w = layer.arrays[0]
            groups = len(w_scales)
            q = to_int8(w.reshape(groups, -1) * w_scales[:, None]).ravel()
            padded = q.tobytes() + b"\0" * (-len(q) % 4)
            chunks += [struct.pack("<I", TAG_INT8), padded, *(a.astype("<f4").tobytes() for a in layer.arrays[1:]),
                       w_scales.astype("<f4").tobytes(), np.float32(scales[layer.name]).astype("<f4").tobytes()]
            tokens.append("8=1" if layer.type == "ConvolutionDepthWise" else "8=2")
            table[layer.name] = {"input": float(scales[layer.name]), "weights": [float(f"{v:.7g}") for v in w_scales]}
        else:
            chunks += [a.astype("<f4").tobytes() for a in layer.arrays]
        lines.append(" ".join(tokens))
    return "\n".join(lines) + "\n", b"".join(chunks), table
