"""Vectorised box operations of the cascade: non-maximum suppression, regression, clipping.

Boxes are float arrays of shape (N, 4): x1, y1, x2, y2 in pixel coordinates, the
box covering [x1, x2) x [y1, y2), so its width is x2 - x1. Overlaps, squares and crops
come from ``openmtcnn.geometry``, which training shares (re-exported here for the cascade).
"""
from __future__ import annotations

import numpy as np

from openmtcnn.geometry import (  # noqa: F401  (the cascade's box toolkit in one namespace)
    BandedIntegral,
    area,
    area_resize,
    area_resizes,
    crop_resize,
    integral_image,
    iou,
    iou_matrix,
    overlap_matrix,
    pair_overlap,
    square,
)


NMS_BLOCK = 1024  # boxes whose candidate pairs are expanded at once: bounds memory
DENSE_PAIRS = 128 # more candidate pairs than this per box: overlaps are dense, the greedy loop wins


def x_sweep(boxes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Boxes sorted by x1, and for each the end of the run of later boxes that start left of its x2."""
    by_x = np.argsort(boxes[:, 0], kind="stable")
    return by_x, np.searchsorted(boxes[by_x, 0], boxes[by_x, 2], side="left")


def overlapping_pairs(boxes: np.ndarray, threshold: float, mode: str = "union",
                      sweep: tuple[np.ndarray, np.ndarray] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """All (i, j), i < j, whose overlap exceeds ``threshold``.

    A sweep along x: with boxes sorted by x1, box p can only meet the boxes after it whose x1
    is left of its x2, a contiguous run found by binary search; only those pairs are measured.
    """
    n = len(boxes)
    by_x, stop = sweep or x_sweep(boxes)
    rows, cols = [np.zeros(0, np.int64)], [np.zeros(0, np.int64)]
    for start in range(0, n, NMS_BLOCK):
        p = np.arange(start, min(start + NMS_BLOCK, n))
        counts = np.maximum(stop[p] - p - 1, 0)
        first = np.repeat(p, counts)
        q = first + 1 + np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)
        a, b = by_x[first], by_x[q]
        hit = pair_overlap(boxes[a], boxes[b], mode) > threshold
        a, b = a[hit], b[hit]
        rows.append(np.minimum(a, b))
        cols.append(np.maximum(a, b))
    return np.concatenate(rows), np.concatenate(cols)


def nms(boxes: np.ndarray, scores: np.ndarray, threshold: float, mode: str = "union") -> np.ndarray:
    """Greedy non-maximum suppression; indices of the kept boxes, best first.

    In score order a box is kept iff no kept box before it overlaps it. Iterating that rule from
    "all kept" settles on its unique solution (the greedy result) after as many rounds as the
    longest chain of suppressions; each round is one vectorised step over the overlapping pairs.
    Where boxes pile up (many pairs), the classic loop, which drops most of them at each
    step, is faster; both give the same answer.
    """
    order = np.argsort(-scores, kind="stable")
    b = boxes[order, :4]
    sweep = x_sweep(b)
    if np.maximum(sweep[1] - np.arange(len(b)) - 1, 0).sum() > DENSE_PAIRS * len(b):
        return order[greedy_nms(b, threshold, mode)]
    i, j = overlapping_pairs(b, threshold, mode, sweep)
    keep = np.ones(len(order), bool)
    while True:
        suppressed = np.zeros(len(order), bool)
        suppressed[j[keep[i]]] = True
        if np.array_equal(~suppressed, keep):
            return order[keep]
        keep = ~suppressed


def greedy_nms(boxes: np.ndarray, threshold: float, mode: str = "union") -> np.ndarray:
    """The classic loop over boxes already in score order: keep the first, drop what it overlaps."""
    rest, keep = np.arange(len(boxes)), []
    while rest.size:
        keep.append(rest[0])
        rest = rest[1:][iou(boxes[rest[0]], boxes[rest[1:]], mode) <= threshold]
    return np.asarray(keep, dtype=np.int64)


def batched_nms(boxes: np.ndarray, scores: np.ndarray, groups: np.ndarray, threshold: float,
                mode: str = "union") -> np.ndarray:
    """NMS within each group at once: groups are moved apart so they never overlap."""
    if boxes.size == 0:
        return np.zeros(0, np.int64)
    b = boxes[:, :4] - boxes[:, :4].min()
    shift = (groups.astype(np.float64) * (b.max() + 1))[:, None]
    return nms(b + shift, scores, threshold, mode)


def regress(boxes: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """Apply the nets' box offsets, given in units of the box's width and height."""
    wh = np.tile(boxes[:, 2:4] - boxes[:, 0:2], 2)
    return boxes + offsets * wh


def clip(boxes: np.ndarray, width: int, height: int) -> np.ndarray:
    """Boxes limited to the image."""
    return np.clip(boxes, 0, [width, height, width, height]).astype(boxes.dtype)


