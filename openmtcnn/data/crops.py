"""Square crops, their IoU labels and regression targets: the samples the nets are trained on.

Crop boxes are integer squares x1 y1 x2 y2 (covering [x1, x2) x [y1, y2)), so a crop is an exact
block of pixels (zero outside the picture) and its targets are exact. Targets follow
``openmtcnn.detect.boxes.regress``: box = (g - c) / (w, h, w, h), points = (p - c.xy) / (w, h).
"""
from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

from openmtcnn import geometry
from openmtcnn.geometry import iou_matrix, square_int  # noqa: F401  (used here and by the landmark samples)

NEGATIVE, POSITIVE, PART, LANDMARK = 0, 1, 2, 3
KIND_NAMES = ("negative", "positive", "part", "landmark")
NEG_IOU, PART_IOU, POS_IOU = 0.3, 0.4, 0.65  # the paper's bands: < 0.3, [0.4, 0.65), >= 0.65


class Samples(NamedTuple):
    """A batch of training samples, in the on-disk layout of one shard."""

    images: np.ndarray  # (n, size, size, 3) uint8 RGB
    kind: np.ndarray  # (n,) int8: NEGATIVE, POSITIVE, PART, LANDMARK
    box: np.ndarray  # (n, 4) float32 box offsets, NaN for negatives and landmark samples
    landmarks: np.ndarray  # (n, 5, 2) float32 points in crop units, NaN except for landmark samples

    @classmethod
    def empty(cls, size: int) -> Samples:
        return cls(np.zeros((0, size, size, 3), np.uint8), np.zeros(0, np.int8),
                   np.zeros((0, 4), np.float32), np.zeros((0, 5, 2), np.float32))

    @classmethod
    def concat(cls, parts: list[Samples], size: int) -> Samples:
        """All parts one after the other (an empty set when there are none)."""
        parts = [p for p in parts if len(p.kind)]
        if not parts:
            return cls.empty(size)
        return cls(*(np.concatenate(arrays) for arrays in zip(*parts)))


def crop_resize(image: np.ndarray, boxes: np.ndarray, size: int) -> np.ndarray:
    """Integer square crops resized to size x size as uint8 samples, by the cascade's own resampler
    (``geometry.crop_resize``: area means when shrinking, bilinear when enlarging, zero outside)."""
    if len(boxes) == 0:
        return np.zeros((0, size, size, image.shape[2]), np.uint8)
    crops = geometry.crop_resize(image, np.asarray(boxes, np.float64), size)
    return np.clip(np.rint(crops), 0, 255).astype(np.uint8)


def box_targets(crops: np.ndarray, gts: np.ndarray) -> np.ndarray:
    """Offsets that move each crop onto its face: (g - c) / (w, h, w, h), float32."""
    crops = crops.astype(np.float64)
    wh = np.tile(crops[:, 2:4] - crops[:, 0:2], 2)
    return ((gts - crops) / wh).astype(np.float32)


def point_targets(crops: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Points (n, 5, 2) in units of each crop: (p - c.xy) / (w, h), float32."""
    crops = crops.astype(np.float64)
    wh = (crops[:, 2:4] - crops[:, 0:2])[:, None, :]
    return ((points - crops[:, None, 0:2]) / wh).astype(np.float32)


def make_samples(image: np.ndarray, crops: np.ndarray, kind: np.ndarray, size: int,
                 gts: np.ndarray | None = None, points: np.ndarray | None = None) -> Samples:
    """Crops of ``image`` with their targets: box targets from ``gts`` (positives and parts), points for landmarks."""
    n = len(crops)
    kind = np.asarray(kind, np.int8)
    box = np.full((n, 4), np.nan, np.float32)
    marks = np.full((n, 5, 2), np.nan, np.float32)
    if gts is not None:
        has_box = (kind == POSITIVE) | (kind == PART)
        box[has_box] = box_targets(crops[has_box], gts[has_box])
    if points is not None:
        is_mark = kind == LANDMARK
        marks[is_mark] = point_targets(crops[is_mark], points[is_mark])
    return Samples(crop_resize(image, crops, size), kind, box, marks)


def label_boxes(crops: np.ndarray, gts: np.ndarray, min_face: float = 20.0) -> tuple[np.ndarray, np.ndarray]:
    """Kind of each crop by its best IoU with the faces (-1: in no band, or its face is under min_face).

    Returns (kind int8, index of the best face). Negatives: IoU < 0.3; parts: [0.4, 0.65);
    positives: >= 0.65. A positive or part whose face's longer side is under ``min_face`` is
    dropped (-1) rather than taught: the cascade is not asked to find such faces.
    """
    n = len(crops)
    if len(gts) == 0:
        return np.zeros(n, np.int8), np.zeros(n, np.int64)
    overlap = iou_matrix(crops.astype(np.float64), gts)
    best = overlap.argmax(axis=1)
    top = overlap[np.arange(n), best]
    kind = np.select([top < NEG_IOU, top >= POS_IOU, top >= PART_IOU], [NEGATIVE, POSITIVE, PART], -1)
    big = np.maximum(gts[:, 2] - gts[:, 0], gts[:, 3] - gts[:, 1]) >= min_face
    kind[(kind != NEGATIVE) & ~big[best]] = -1
    return kind.astype(np.int8), best


def label_candidates(image: np.ndarray, candidate_boxes: np.ndarray, gt_boxes: np.ndarray, size: int,
                     min_face: float = 20.0, neg_ratio: float | None = None,
                     rng: np.random.Generator | None = None) -> Samples:
    """Training samples from boxes an earlier stage proposed (hard examples for R-Net / O-Net).

    The candidates are squared as the cascade squares them, labelled by IoU with ``gt_boxes``
    (see ``label_boxes``) and cropped. With ``neg_ratio``, negatives are capped at
    ceil(neg_ratio * max(positives, 1)), a random subset drawn with ``rng``.
    """
    cand = np.asarray(candidate_boxes, np.float64).reshape(-1, 4)
    gts = np.asarray(gt_boxes, np.float64).reshape(-1, 4)
    cand = cand[np.isfinite(cand).all(axis=1)]
    crops = square_int(cand)
    h, w = image.shape[:2]
    inside = (crops[:, 0] < w) & (crops[:, 1] < h) & (crops[:, 2] > 0) & (crops[:, 3] > 0)
    crops = crops[inside]
    kind, best = label_boxes(crops, gts, min_face)
    if neg_ratio is not None:
        neg = np.flatnonzero(kind == NEGATIVE)
        cap = math.ceil(neg_ratio * max(int((kind == POSITIVE).sum()), 1))
        if len(neg) > cap:
            rng = rng if rng is not None else np.random.default_rng(0)
            kind[np.setdiff1d(neg, rng.choice(neg, cap, replace=False))] = -1
    keep = kind >= 0
    gt_of = gts[best[keep]] if len(gts) else None
    return make_samples(image, crops[keep], kind[keep], size, gts=gt_of)


def random_negatives(rng: np.random.Generator, width: int, height: int, gts: np.ndarray, count: int,
                     min_crop: int = 12, rounds: int = 4) -> np.ndarray:
    """Up to ``count`` random squares inside the picture (side min_crop .. short side / 2) with IoU < 0.3 to every face."""
    top = min(width, height) // 2
    if count <= 0 or top <= min_crop:
        return np.zeros((0, 4), np.int64)
    found = []
    for _ in range(rounds):  # a few vectorised draws; crowded pictures need more than one
        side = rng.integers(min_crop, top, 4 * count)
        x1, y1 = rng.integers(0, width - side + 1), rng.integers(0, height - side + 1)
        boxes = np.stack([x1, y1, x1 + side, y1 + side], axis=1)
        ok = label_boxes(boxes, gts)[0] == NEGATIVE if len(gts) else np.ones(len(boxes), bool)
        found.append(boxes[ok])
        if sum(map(len, found)) >= count:
            break
    return np.concatenate(found)[:count]


def near_negatives(rng: np.random.Generator, width: int, height: int, faces: np.ndarray, gts: np.ndarray,
                   per_face: int = 5, min_crop: int = 12) -> np.ndarray:
    """Squares beside each face (they overlap it a little) that still have IoU < 0.3 with every face."""
    top = min(width, height) // 2
    if per_face <= 0 or top <= min_crop or len(faces) == 0:
        return np.zeros((0, 4), np.int64)
    f = np.repeat(faces, per_face, axis=0)
    side = rng.integers(min_crop, top, len(f))
    fx1, fy1 = np.floor(f[:, 0]).astype(np.int64), np.floor(f[:, 1]).astype(np.int64)
    fw, fh = np.ceil(f[:, 2] - f[:, 0]).astype(np.int64), np.ceil(f[:, 3] - f[:, 1]).astype(np.int64)
    fw, fh = np.maximum(fw, 1), np.maximum(fh, 1)
    x1 = np.maximum(fx1 + rng.integers(np.minimum(np.maximum(-side, -fx1), fw - 1), fw), 0)
    y1 = np.maximum(fy1 + rng.integers(np.minimum(np.maximum(-side, -fy1), fh - 1), fh), 0)
    boxes = np.stack([x1, y1, x1 + side, y1 + side], axis=1)
    inside = (boxes[:, 2] <= width) & (boxes[:, 3] <= height)
    return boxes[inside & (label_boxes(boxes, gts)[0] == NEGATIVE)]


def jittered_squares(rng: np.random.Generator, faces: np.ndarray, per_face: int,
                     shift: float = 0.2, scale: tuple[float, float] = (0.8, 1.25)) -> np.ndarray:
    """Squares around each face: side in [0.8 min(w, h), 1.25 max(w, h)], centre moved by up to 0.2 w / h."""
    f = np.repeat(np.asarray(faces, np.float64).reshape(-1, 4), per_face, axis=0)
    w, h = f[:, 2] - f[:, 0], f[:, 3] - f[:, 1]
    lo = np.maximum(np.floor(scale[0] * np.minimum(w, h)), 1).astype(np.int64)
    hi = np.maximum(np.ceil(scale[1] * np.maximum(w, h)), lo).astype(np.int64)
    side = rng.integers(lo, hi + 1)
    cx = f[:, 0] + w / 2 + rng.uniform(-shift, shift, len(f)) * w
    cy = f[:, 1] + h / 2 + rng.uniform(-shift, shift, len(f)) * h
    x1, y1 = np.floor(cx - side / 2).astype(np.int64), np.floor(cy - side / 2).astype(np.int64)
    return np.stack([x1, y1, x1 + side, y1 + side], axis=1)


def face_samples(image: np.ndarray, gts: np.ndarray, size: int, rng: np.random.Generator,
                 negatives: int = 50, near: int = 5, attempts: int = 20, min_face: float = 20.0,
                 min_crop: int = 12) -> Samples:
    """The paper's random crops of one picture: negatives anywhere and beside faces, positives and parts around faces.

    ``negatives`` random squares with IoU < 0.3; per face of longer side >= ``min_face``,
    ``near`` tries for a negative beside it and ``attempts`` jittered squares, kept as
    positives (IoU >= 0.65) or parts ([0.4, 0.65)) of the face they overlap most.
    """
    h, w = image.shape[:2]
    gts = np.asarray(gts, np.float64).reshape(-1, 4)
    faces = gts[np.maximum(gts[:, 2] - gts[:, 0], gts[:, 3] - gts[:, 1]) >= min_face]
    neg = np.concatenate([random_negatives(rng, w, h, gts, negatives, min_crop),
                          near_negatives(rng, w, h, faces, gts, near, min_crop)])
    around = jittered_squares(rng, faces, attempts)
    kind, best = label_boxes(around, gts, min_face)
    keep = (kind == POSITIVE) | (kind == PART)
    crops = np.concatenate([neg, around[keep]]).astype(np.int64)
    kinds = np.concatenate([np.zeros(len(neg), np.int8), kind[keep]])
    matched = np.concatenate([np.zeros((len(neg), 4)), gts[best[keep]] if len(gts) else np.zeros((0, 4))])
    return make_samples(image, crops, kinds, size, gts=matched)
