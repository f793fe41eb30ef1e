"""Vectorised box operations of the cascade.

Boxes are float arrays of shape (N, 4): x1, y1, x2, y2 in pixel coordinates, the
box covering [x1, x2) x [y1, y2), so its width is x2 - x1.
"""
from __future__ import annotations

import cv2
import numpy as np


def area(boxes: np.ndarray) -> np.ndarray:
    return np.maximum(boxes[..., 2] - boxes[..., 0], 0) * np.maximum(boxes[..., 3] - boxes[..., 1], 0)


def iou(box: np.ndarray, boxes: np.ndarray, mode: str = "union") -> np.ndarray:
    """Overlap of one box with many: intersection over union, or over the smaller area ("min")."""
    w = np.minimum(box[2], boxes[:, 2]) - np.maximum(box[0], boxes[:, 0])
    h = np.minimum(box[3], boxes[:, 3]) - np.maximum(box[1], boxes[:, 1])
    inter = np.maximum(w, 0) * np.maximum(h, 0)
    a, b = area(box), area(boxes)
    denom = np.minimum(a, b) if mode == "min" else a + b - inter
    return inter / np.maximum(denom, 1e-12)


def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pairwise intersection over union, shape (len(a), len(b))."""
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:4], b[None, :, 2:4])
    inter = np.prod(np.clip(rb - lt, 0, None), axis=2)
    return inter / np.maximum(area(a)[:, None] + area(b)[None, :] - inter, 1e-12)


def nms(boxes: np.ndarray, scores: np.ndarray, threshold: float, mode: str = "union") -> np.ndarray:
    """Greedy non-maximum suppression; indices of the kept boxes, best first."""
    order = np.argsort(-scores, kind="stable")
    keep = []
    while order.size:
        i = order[0]
        keep.append(i)
        order = order[1:][iou(boxes[i], boxes[order[1:]], mode) <= threshold]
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


def square(boxes: np.ndarray) -> np.ndarray:
    """Squares of side max(w, h) around the same centres (the nets see square crops)."""
    wh = boxes[:, 2:4] - boxes[:, 0:2]
    centre = boxes[:, 0:2] + wh / 2
    half = wh.max(axis=1, keepdims=True) / 2
    return np.hstack([centre - half, centre + half])


def clip(boxes: np.ndarray, width: int, height: int) -> np.ndarray:
    """Boxes limited to the image."""
    return np.clip(boxes, 0, [width, height, width, height]).astype(boxes.dtype)


def crop_resize(image: np.ndarray, boxes: np.ndarray, size: int) -> np.ndarray:
    """Crops of ``boxes`` resized to size x size, zero outside the image; (N, size, size, 3) float32.

    Like OpenCV's INTER_AREA, crops larger than ``size`` are area-averaged (exactly,
    from the integral image) and smaller ones bilinearly interpolated.
    """
    out = np.zeros((len(boxes), size, size, image.shape[2]), np.float32)
    if len(boxes) == 0:
        return out
    side = np.maximum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1])
    shrink = side >= size
    if shrink.any():
        out[shrink] = _area_resize(cv2.integral(image, sdepth=cv2.CV_64F), boxes[shrink], size)
    if (~shrink).any():
        out[~shrink] = _bilinear_resize(image, boxes[~shrink], size)
    return out


def _interp2(grid: np.ndarray, ys: np.ndarray, xs: np.ndarray) -> np.ndarray:
    """Bilinear samples of ``grid`` (H, W, C) at ys (N, A) x xs (N, B) -> (N, A, B, C), clamped."""
    h, w = grid.shape[:2]
    ys = np.clip(ys, 0, h - 1)
    xs = np.clip(xs, 0, w - 1)
    y0 = np.minimum(ys.astype(np.int64), h - 2) if h > 1 else np.zeros_like(ys, np.int64)
    x0 = np.minimum(xs.astype(np.int64), w - 2) if w > 1 else np.zeros_like(xs, np.int64)
    fy = (ys - y0)[:, :, None, None]
    fx = (xs - x0)[:, None, :, None]
    y1, x1 = np.minimum(y0 + 1, h - 1), np.minimum(x0 + 1, w - 1)
    r0, r1 = y0[:, :, None], y1[:, :, None]
    c0, c1 = x0[:, None, :], x1[:, None, :]
    top = grid[r0, c0] * (1 - fx) + grid[r0, c1] * fx
    bottom = grid[r1, c0] * (1 - fx) + grid[r1, c1] * fx
    return top * (1 - fy) + bottom * fy


def _area_resize(integral: np.ndarray, boxes: np.ndarray, size: int) -> np.ndarray:
    """Mean of the image over each output cell, from the integral image (zero outside)."""
    t = np.arange(size + 1) / size
    xs = boxes[:, 0:1] + (boxes[:, 2:3] - boxes[:, 0:1]) * t
    ys = boxes[:, 1:2] + (boxes[:, 3:4] - boxes[:, 1:2]) * t
    s = _interp2(integral, ys, xs)
    sums = s[:, 1:, 1:] - s[:, :-1, 1:] - s[:, 1:, :-1] + s[:, :-1, :-1]
    cell = ((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]) / size**2)[:, None, None, None]
    return (sums / cell).astype(np.float32)


def _bilinear_resize(image: np.ndarray, boxes: np.ndarray, size: int) -> np.ndarray:
    """Bilinear samples at the output pixel centres, from the image padded with zeros."""
    padded = np.pad(image, ((1, 1), (1, 1), (0, 0))).astype(np.float32)
    t = (np.arange(size) + 0.5) / size
    xs = boxes[:, 0:1] + (boxes[:, 2:3] - boxes[:, 0:1]) * t - 0.5 + 1
    ys = boxes[:, 1:2] + (boxes[:, 3:4] - boxes[:, 1:2]) * t - 0.5 + 1
    return _interp2(padded, ys, xs).astype(np.float32)
