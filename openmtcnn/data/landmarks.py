"""Landmark samples: jittered crops of a labelled face, mirrored and rotated with their five points.

Points are in continuous pixel coordinates (pixel i covers [i, i + 1)), the convention of the
boxes; cv2 works on pixel indices, hence the half-pixel shifts around ``warpAffine``.
"""
from __future__ import annotations

import cv2
import numpy as np

from openmtcnn.data.crops import (
    LANDMARK,
    POS_IOU,
    Samples,
    crop_resize,
    iou_matrix,
    jittered_squares,
    point_targets,
)

FLIP_ORDER = np.array([1, 0, 2, 4, 3])  # mirrored: the left eye is the old right eye, likewise the mouth corners


def flip(image: np.ndarray, box: np.ndarray, points: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mirror picture, box and points left to right; left/right eyes and mouth corners swap roles."""
    w = image.shape[1]
    box = np.asarray(box, np.float64)
    mirrored = points[FLIP_ORDER].astype(np.float64)
    mirrored[:, 0] = w - mirrored[:, 0]
    return np.ascontiguousarray(image[:, ::-1]), np.array([w - box[2], box[1], w - box[0], box[3]]), mirrored


def rotation(angle: float, centre: tuple[float, float]) -> np.ndarray:
    """2x3 matrix of cv2.warpAffine turning the picture by ``angle`` degrees (counter-clockwise) about ``centre``."""
    return cv2.getRotationMatrix2D((float(centre[0]) - 0.5, float(centre[1]) - 0.5), float(angle), 1.0)


def rotate(image: np.ndarray, points: np.ndarray, angle: float, centre: tuple[float, float]
           ) -> tuple[np.ndarray, np.ndarray]:
    """Picture and points turned by ``angle`` degrees about ``centre``; zero where the picture had nothing."""
    m = rotation(angle, centre)
    h, w = image.shape[:2]
    turned = cv2.warpAffine(image, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    return turned, (points - 0.5) @ m[:, :2].T + m[:, 2] + 0.5


def landmark_samples(image: np.ndarray, box: np.ndarray, points: np.ndarray, size: int, rng: np.random.Generator,
                     count: int = 10, tries: int = 4, flip_prob: float = 0.5, rotate_prob: float = 0.5,
                     max_angle: float = 15.0) -> Samples:
    """Up to ``count`` landmark samples of one face, each a jittered square with IoU >= 0.65 to the box.

    Each is mirrored with ``flip_prob`` and turned about its centre by up to ``max_angle``
    degrees with ``rotate_prob``; a sample is kept only if all five points stay inside the crop.
    All random draws are made up front, so the result depends only on the generator's state.
    """
    box = np.asarray(box, np.float64)
    points = np.asarray(points, np.float64)
    crops = jittered_squares(rng, box[None], count * tries)
    n = len(crops)
    flips = rng.random(n) < flip_prob
    angles = np.where(rng.random(n) < rotate_prob, rng.uniform(-max_angle, max_angle, n), 0.0)
    close = iou_matrix(crops.astype(np.float64), box[None])[:, 0] >= POS_IOU
    crops, flips, angles = crops[close], flips[close], angles[close]
    w = image.shape[1]
    mirrored = flip(image, box, points) if flips.any() else None
    kept_crops, kept_points, pictures = [], [], []
    for crop, flipped, angle in zip(crops, flips, angles):  # one warp a sample
        pic, pts = (mirrored[0], mirrored[2]) if flipped else (image, points)
        if flipped:
            crop = np.array([w - crop[2], crop[1], w - crop[0], crop[3]])
        if angle:
            pic, pts = rotate(pic, pts, angle, ((crop[0] + crop[2]) / 2, (crop[1] + crop[3]) / 2))
        target = point_targets(crop[None], pts[None])[0]
        if not ((target >= 0) & (target <= 1)).all():
            continue
        kept_crops.append(crop)
        kept_points.append(target)
        pictures.append(crop_resize(pic, crop[None], size)[0])
        if len(kept_crops) == count:
            break
    k = len(kept_crops)
    if k == 0:
        return Samples.empty(size)
    return Samples(np.stack(pictures), np.full(k, LANDMARK, np.int8), np.full((k, 4), np.nan, np.float32),
                   np.stack(kept_points).astype(np.float32))
