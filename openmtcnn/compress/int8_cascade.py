"""The MTCNN cascade in integers: the NumPy reference of the C runtime (``openmtcnn export c``).

The same algorithm as ``openmtcnn.MTCNN`` (pyramid, P-Net, NMS, regression, square crops,
R-Net, O-Net, landmarks, final NMS) with every step in integers, so that C reproduces it bit
for bit: boxes in 1/16 pixel, pyramid scales in 1/65536, face logits and offsets in 1/4096,
overlap thresholds in 1/1024, and resizing by exact area averaging (or bilinear sampling for
crops smaller than the net input) with integer weights.

Candidate counts are capped (``CascadeConfig``): a stage keeps the best-scored boxes, ties
going to the earlier one. Thresholds apply to the face logit (``logit >= threshold``).
"""
from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import cv2
import numpy as np

from openmtcnn.compress import int8
from openmtcnn.compress.int8 import Q_BOX, Q_HEAD, QNet
from openmtcnn.detect.cascade import Detections
from openmtcnn.geometry import PNET_STRIDE as STRIDE
from openmtcnn.geometry import PNET_WINDOW as CELL
from openmtcnn.geometry import STAGES  # noqa: F401  (this module's stages, as the float cascade's)

# The boxes, squares and crops below are the fixed-point mirror of the generated C code (1/32-pixel
# integers, integer weights), not the float geometry: they must match the C bit for bit.
COORD_LIMIT = 2**20  # box coordinates stay within +-65536 pixels (1/16 pixel units): no int64 overflow
ONE = 1 << Q_BOX  # one pixel


@dataclass(frozen=True)
class CascadeConfig:
    """Detection settings and candidate caps, shared by the Python reference and the C runtime."""

    min_face_size: float = 20
    scale_factor: float = 0.709
    thresholds: tuple[float, float, float] = (0.6, 0.7, 0.7)
    nms_thresholds: tuple[float, float, float, float] = (0.5, 0.7, 0.7, 0.7)
    level_cap: int = 256  # P-Net windows kept per pyramid level (before that level's NMS)
    proposal_cap: int = 128  # P-Net boxes kept over all levels (before the cross-level NMS)
    rnet_cap: int = 128  # crops R-Net sees per frame
    onet_cap: int = 32  # crops O-Net sees per frame

    @property
    def scale0_q16(self) -> int:
        return math.floor(CELL / self.min_face_size * 65536)  # down: 160 x 0.6 stays a 96-pixel level

    @property
    def factor_q16(self) -> int:
        return round(self.scale_factor * 65536)

    @property
    def logit_thresholds(self) -> tuple[int, int, int]:
        """Face probability thresholds as face-logit thresholds in 1/4096."""
        return tuple(math.ceil(math.log(t / (1 - t)) * 2**Q_HEAD) for t in self.thresholds)

    @property
    def nms_q10(self) -> tuple[int, int, int, int]:
        return tuple(round(t * 1024) for t in self.nms_thresholds)

    def check(self) -> None:
        if not 1 <= self.min_face_size <= 1000 or not 0.1 <= self.scale_factor <= 0.95:
            raise ValueError("min_face_size must be in [1, 1000] and scale_factor in [0.1, 0.95]")
        if not all(0 < t < 1 for t in self.thresholds) or not all(0 <= t <= 1 for t in self.nms_thresholds):
            raise ValueError("thresholds must be in (0, 1), NMS thresholds in [0, 1]")
        caps = (self.level_cap, self.proposal_cap, self.rnet_cap, self.onet_cap)
        if not all(1 <= c <= 4096 for c in caps):
            raise ValueError(f"candidate caps must be in [1, 4096], got {caps}")


# ---- integer image resampling ------------------------------------------------------------------

def axis_weights(start: np.ndarray, side: np.ndarray, out: int, n: int) -> np.ndarray:
    """(N, out, n) integer weights: how much of pixel i falls in output cell j along one axis.

    Cell j spans [start + j * side / out, start + (j + 1) * side / out) (start, side in 1/16
    pixel); lengths are counted in 1/(16 out) pixel, so every weight is an exact integer.
    Pixels past the image edge do not exist: their share counts as zero.
    """
    unit = ONE * out
    lo = start[:, None] * out + np.arange(out) * side[:, None]
    pix = np.arange(n, dtype=np.int64) * unit
    w = np.minimum((lo + side[:, None])[..., None], pix + unit) - np.maximum(lo[..., None], pix)
    return np.maximum(w, 0)


def resample(image: np.ndarray, boxes: np.ndarray, out_w: int, out_h: int, chunk: int = 64) -> np.ndarray:
    """Crops of ``boxes`` (N, 4) x1 y1 x2 y2 in 1/16 pixel, area-averaged to (N, out_h, out_w, 3) uint8.

    Each output is the mean of the image over its cell (zero outside the image), rounded to
    nearest: sum(wy * wx * pixel) / (box width * height) in integers, as the C runtime does.
    """
    h, w, c = image.shape
    out = np.zeros((len(boxes), out_h, out_w, c), np.uint8)
    flat = image.reshape(h, w * c)
    for s in range(0, len(boxes), chunk):
        b = boxes[s:s + chunk].astype(np.int64)
        sw, sh = b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]
        wx, wy = axis_weights(b[:, 0], sw, out_w, w), axis_weights(b[:, 1], sh, out_h, h)
        rows = int8.exact_matmul(wy, flat).reshape(len(b), out_h, w, c)
        acc = np.rint(wx[:, None].astype(np.float64) @ rows.astype(np.float64)).astype(np.int64)
        den = (sw * sh)[:, None, None, None]
        out[s:s + chunk] = (acc + den // 2) // den
    return out


def bilinear(image: np.ndarray, boxes: np.ndarray, size: int) -> np.ndarray:
    """Crops of ``boxes`` (1/16 pixel) sampled bilinearly at the size x size output pixel centres, zero outside.

    Positions are exact in 1/(32 size) pixel, so each output is an integer weighted sum of four
    pixels divided by (32 size)**2, rounded to nearest: what the C runtime computes.
    """
    h, w, c = image.shape
    unit = 2 * ONE * size
    b = boxes.astype(np.int64)
    steps = 2 * np.arange(size) + 1

    def axis(lo: np.ndarray, hi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        pos = lo[:, None] * 2 * size + (hi - lo)[:, None] * steps - ONE * size  # pixel centres sit at +0.5
        first = pos // unit
        return first, pos - first * unit

    y0, fy = axis(b[:, 1], b[:, 3])
    x0, fx = axis(b[:, 0], b[:, 2])
    acc = np.zeros((len(b), size, size, c), np.int64)
    for dy, wy in ((0, unit - fy), (1, fy)):
        for dx, wx in ((0, unit - fx), (1, fx)):
            ys, xs = y0 + dy, x0 + dx
            inside = ((ys >= 0) & (ys < h))[:, :, None] & ((xs >= 0) & (xs < w))[:, None, :]
            px = image[np.clip(ys, 0, h - 1)[:, :, None], np.clip(xs, 0, w - 1)[:, None, :]].astype(np.int64)
            acc += (wy[:, :, None] * wx[:, None, :] * inside)[..., None] * px
    return ((acc + unit * unit // 2) // (unit * unit)).astype(np.uint8)


def crop_resize(image: np.ndarray, boxes: np.ndarray, size: int) -> np.ndarray:
    """Crops for R-Net / O-Net: area-averaged when the box is at least ``size`` pixels, else bilinear (as OpenCV)."""
    out = np.zeros((len(boxes), size, size, image.shape[2]), np.uint8)
    shrink = np.maximum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]) >= size * ONE
    if shrink.any():
        out[shrink] = resample(image, boxes[shrink], size, size)
    if (~shrink).any():
        out[~shrink] = bilinear(image, boxes[~shrink], size)
    return out


def pyramid(width: int, height: int, cfg: CascadeConfig) -> list[tuple[int, int, int]]:
    """(scale in 1/65536, level width, level height) of every pyramid level."""
    levels, s = [], cfg.scale0_q16
    while min(width, height) * s >= CELL << 16:
        levels.append((s, (width * s + 0xFFFF) >> 16, (height * s + 0xFFFF) >> 16))
        s = (s * cfg.factor_q16 + 0x8000) >> 16
    return levels


# ---- integer box arithmetic ---------------------------------------------------------------------

def regress(boxes: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """Move boxes by offsets (1/4096 of the box's width and height), rounded to 1/16 pixel."""
    wh = np.tile(boxes[:, 2:4] - boxes[:, 0:2], 2)
    moved = boxes + ((offsets.astype(np.int64) * wh + (1 << (Q_HEAD - 1))) >> Q_HEAD)
    return np.clip(moved, -COORD_LIMIT, COORD_LIMIT)


def square(boxes: np.ndarray) -> np.ndarray:
    """Squares of side max(w, h, 1 pixel) on the same centre (to 1/32 pixel)."""
    w, h = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    side = np.maximum(np.maximum(w, h), ONE)
    x1, y1 = boxes[:, 0] - ((side - w) >> 1), boxes[:, 1] - ((side - h) >> 1)
    return np.stack([x1, y1, x1 + side, y1 + side], axis=1)


def nms(boxes: np.ndarray, keys: np.ndarray, seqs: np.ndarray, threshold_q10: int, mode: str = "union") -> np.ndarray:
    """Greedy NMS in integers: indices of the kept boxes in (logit desc, sequence asc) order.

    A box is dropped when inter * 1024 > threshold * (union, or the smaller area for "min")
    with an earlier kept box. Solved by repeating the rule from "all kept" until it settles.
    """
    order = np.lexsort((seqs, -keys.astype(np.int64)))
    b = boxes[order].astype(np.int64)
    x1, y1, x2, y2 = b.T
    iw = np.minimum(x2[:, None], x2[None]) - np.maximum(x1[:, None], x1[None])
    ih = np.minimum(y2[:, None], y2[None]) - np.maximum(y1[:, None], y1[None])
    inter = np.maximum(iw, 0) * np.maximum(ih, 0)
    area = np.maximum(x2 - x1, 0) * np.maximum(y2 - y1, 0)
    denom = np.minimum(area[:, None], area[None]) if mode == "min" else area[:, None] + area[None] - inter
    hits = np.triu(inter * 1024 > threshold_q10 * denom, k=1)
    keep = np.ones(len(b), bool)
    while True:
        new = ~(hits & keep[:, None]).any(axis=0)
        if np.array_equal(new, keep):
            return order[keep]
        keep = new


def top(keys: np.ndarray, seqs: np.ndarray, cap: int) -> np.ndarray:
    """Indices of the ``cap`` best (logit desc, sequence asc), in their original order."""
    if len(keys) <= cap:
        return np.arange(len(keys))
    return np.sort(np.lexsort((seqs, -keys.astype(np.int64)))[:cap])


# ---- the cascade --------------------------------------------------------------------------------

class Int8MTCNN:
    """The integer cascade: ``detect(rgb)`` -> Detections, ``detect_raw(rgb)`` -> the exact integers."""

    def __init__(self, nets: dict[str, QNet], config: CascadeConfig = CascadeConfig()):
        config.check()
        self.nets, self.config = nets, config

    # stages, each on one uint8 RGB image; boxes int64 (N, 4) in 1/16 pixel, keys face logits in 1/4096
    def propose(self, image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """P-Net on every pyramid level: capped, NMS per level, capped again, NMS across levels."""
        cfg, (t_p, _, _), nms_q = self.config, self.config.logit_thresholds, self.config.nms_q10
        h, w = image.shape[:2]
        boxes, keys = [np.zeros((0, 4), np.int64)], [np.zeros(0, np.int64)]
        for scale, lw, lh in pyramid(w, h, cfg):
            level = resample(image, np.array([[0, 0, w * ONE, h * ONE]]), lw, lh)
            out = int8.forward(self.nets["pnet"], level)[0]
            ys, xs = np.nonzero(out[..., 0] >= t_p)
            k, seq = out[ys, xs, 0], ys * out.shape[1] + xs
            windows = np.stack([xs, ys, xs, ys], axis=1).astype(np.int64) * STRIDE + [0, 0, CELL, CELL]
            b = regress(((windows << (16 + Q_BOX)) + scale // 2) // scale, out[ys, xs, 1:5])
            sel = top(k, seq, cfg.level_cap)
            kept = sel[nms(b[sel], k[sel], seq[sel], nms_q[0])]
            boxes.append(b[kept])
            keys.append(k[kept])
        b, k = np.concatenate(boxes), np.concatenate(keys)
        sel = top(k, np.arange(len(k)), cfg.proposal_cap)
        kept = sel[nms(b[sel], k[sel], sel, nms_q[1])]
        return b[kept], k[kept]

    def refine(self, image: np.ndarray, boxes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """R-Net on square crops of the best boxes: threshold, NMS on the crops, then regression."""
        sq = square(boxes[:self.config.rnet_cap])
        out = int8.forward(self.nets["rnet"], crop_resize(image, sq, 24))
        idx = np.nonzero(out[:, 0] >= self.config.logit_thresholds[1])[0]
        kept = idx[nms(sq[idx], out[idx, 0], idx, self.config.nms_q10[2])]
        return regress(sq[kept], out[kept, 1:5]), out[kept, 0]

    def output(self, image: np.ndarray, boxes: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """O-Net on square crops: threshold, landmarks, regression, final NMS (overlap of the smaller)."""
        sq = square(boxes[:self.config.onet_cap])
        out = int8.forward(self.nets["onet"], crop_resize(image, sq, 48))
        idx = np.nonzero(out[:, 0] >= self.config.logit_thresholds[2])[0]
        sq, out = sq[idx], out[idx]
        wh = (sq[:, 2:4] - sq[:, 0:2])[:, None, :]
        offsets = out[:, 5:15].reshape(-1, 2, 5).transpose(0, 2, 1).astype(np.int64)
        landmarks = sq[:, None, 0:2] + ((offsets * wh + (1 << (Q_HEAD - 1))) >> Q_HEAD)
        moved = regress(sq, out[:, 1:5])
        kept = nms(moved, out[:, 0], idx, self.config.nms_q10[3], mode="min")
        return moved[kept], out[kept, 0], landmarks[kept]

    def detect_raw(self, image: np.ndarray) -> dict[str, np.ndarray]:
        """The cascade's integers: boxes (N, 4) and landmarks (N, 5, 2) in 1/16 pixel, logits in 1/4096."""
        image = np.ascontiguousarray(image, np.uint8)
        if image.ndim != 3 or image.shape[2] != 3:
            raise ValueError(f"expected an RGB image (H, W, 3), got shape {image.shape}")
        h, w = image.shape[:2]
        boxes, _ = self.propose(image)
        if len(boxes):
            boxes, _ = self.refine(image, boxes)
        if not len(boxes):
            return {"boxes": np.zeros((0, 4), np.int64), "logits": np.zeros(0, np.int64),
                    "landmarks": np.zeros((0, 5, 2), np.int64)}
        boxes, logits, landmarks = self.output(image, boxes)
        limit = np.array([w, h]) * ONE
        return {"boxes": np.clip(boxes, 0, np.tile(limit, 2)), "logits": logits,
                "landmarks": np.clip(landmarks, 0, limit)}

    def detect(self, image: np.ndarray) -> Detections:
        """Faces in one RGB uint8 image, best first, as ``MTCNN.detect`` gives them."""
        return to_detections(self.detect_raw(image))

    # storage
    def save(self, path: str | os.PathLike) -> Path:
        """Write the integer model (all three nets and the settings) as a pickle-free npz."""
        from openmtcnn.fileio import atomic_write

        arrays = {k: v for s in STAGES for k, v in int8.qnet_arrays(self.nets[s]).items()}
        arrays["config"] = np.array(json.dumps(asdict(self.config)))

        def write(tmp: str) -> None:
            with open(tmp, "wb") as f:
                np.savez(f, **arrays)

        return atomic_write(path, write)

    @classmethod
    def load(cls, path: str | os.PathLike) -> Int8MTCNN:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
        cfg = json.loads(str(arrays["config"]))
        cfg = CascadeConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in cfg.items()})
        return cls({s: int8.qnet_from_arrays(arrays, s) for s in STAGES}, cfg)


def to_detections(raw: dict[str, np.ndarray]) -> Detections:
    """Integer results as float Detections (pixels, probabilities)."""
    scores = 1 / (1 + np.exp(-raw["logits"] / 2**Q_HEAD))
    return Detections((raw["boxes"] / ONE).astype(np.float32), scores.astype(np.float32),
                      (raw["landmarks"] / ONE).astype(np.float32))


# ---- frames and calibration -------------------------------------------------------------------

def fit_camera(image: np.ndarray, width: int, height: int, cover: bool = False) -> tuple[np.ndarray, float, tuple]:
    """A photo as a width x height camera frame: (frame, scale, (dx, dy)) with frame = photo * scale + d.

    By default the whole photo is fitted inside (black bars); ``cover`` fills the frame and
    crops the centre.
    """
    h, w = image.shape[:2]
    s = (max if cover else min)(width / w, height / h)
    rw, rh = max(1, round(w * s)), max(1, round(h * s))
    resized = cv2.resize(image, (rw, rh), interpolation=cv2.INTER_AREA)
    frame = np.zeros((height, width, 3), np.uint8)
    dx, dy = (width - rw) // 2, (height - rh) // 2
    src = resized[max(0, -dy):max(0, -dy) + height, max(0, -dx):max(0, -dx) + width]
    frame[max(0, dy):max(0, dy) + src.shape[0], max(0, dx):max(0, dx) + src.shape[1]] = src
    return frame, s, (dx, dy)


def random_squares(width: int, height: int, n: int, rng: np.random.Generator) -> np.ndarray:
    """n random squares inside the frame (1/16 pixel), from 12 pixels to the frame's short side."""
    side = rng.integers(CELL * ONE, min(width, height) * ONE + 1, n)
    x1 = (rng.random(n) * (width * ONE - side)).astype(np.int64)
    y1 = (rng.random(n) * (height * ONE - side)).astype(np.int64)
    return np.stack([x1, y1, x1 + side, y1 + side], axis=1)


def quantize_cascade(nets: dict, frames: list[np.ndarray], config: CascadeConfig = CascadeConfig(),
                     ranges: dict[str, dict[str, float]] | None = None, percentile: float = 99.99,
                     random_crops: int = 16) -> Int8MTCNN:
    """Quantise float torch nets {stage: net} on calibration frames (uint8 RGB, camera size).

    Each net is calibrated on what it sees at inference: P-Net on the pyramid levels, R-Net
    and O-Net on the crops of the already-quantised earlier stages, plus ``random_crops``
    random squares per frame (fixed seed). ``ranges`` ({stage: {layer: max}}) skips calibration
    of the layers it names.
    """
    ranges = ranges or {}
    if not frames:
        raise ValueError("calibration needs at least one frame")
    rng = np.random.default_rng(0)
    squares = [random_squares(f.shape[1], f.shape[0], random_crops, rng) for f in frames]
    q: dict[str, QNet] = {}

    def quantize(stage: str, batches) -> None:
        needed = [f.name for f in int8.parse_net(nets[stage], stage)[0]]
        given = ranges.get(stage, {})
        found = {} if all(n in given for n in needed) else int8.calibrate(nets[stage], stage, batches, percentile)
        q[stage] = int8.quantize_net(nets[stage], stage, {**found, **given})

    levels = [resample(f, np.array([[0, 0, f.shape[1] * ONE, f.shape[0] * ONE]]), lw, lh)
              for f in frames for _, lw, lh in pyramid(f.shape[1], f.shape[0], config)]
    quantize("pnet", levels)
    cascade = Int8MTCNN({**q, "rnet": None, "onet": None}, config)
    found = [cascade.propose(f)[0] for f in frames]
    crops = np.concatenate([crop_resize(f, np.concatenate([square(b[:config.rnet_cap]), s]), 24)
                            for f, b, s in zip(frames, found, squares)])
    quantize("rnet", np.array_split(crops, max(1, len(crops) // 256)))
    cascade.nets["rnet"] = q["rnet"]
    found = [cascade.refine(f, b)[0] if len(b) else b for f, b in zip(frames, found)]
    crops = np.concatenate([crop_resize(f, np.concatenate([square(b[:config.onet_cap]), s]), 48)
                            for f, b, s in zip(frames, found, squares)])
    quantize("onet", np.array_split(crops, max(1, len(crops) // 128)))
    return Int8MTCNN(q, config)


def load_float_nets(weights: str | os.PathLike) -> dict:
    """The float torch nets of a weight set (name or folder), in eval mode."""
    from openmtcnn.runtime.torch import load_net

    return {s: load_net(weights, s).net.eval() for s in STAGES}


def read_frames(paths: list[str | os.PathLike], width: int, height: int, cover: bool = True) -> list[np.ndarray]:
    """Photos as camera frames (by default filling the frame, centre crop), for calibration."""
    from openmtcnn.detect.image import to_rgb

    return [fit_camera(to_rgb(str(p)), width, height, cover)[0] for p in paths]
