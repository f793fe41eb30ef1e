"""Masking faces in one image: blur, mosaic or solid fill, over an ellipse or a box grown around each face.

Blur and mosaic both shrink the masked region to at most ``cells`` x ``cells`` averages and
enlarge it again, so no detail finer than a cell survives (a plain Gaussian blur of a face can
be partly undone); blur then smooths the cells away. Both cost the same for any face size.
This module imports only NumPy and OpenCV at top level: ``import openmtcnn`` stays light.
"""
from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

MODES = ("blur", "mosaic", "solid", "none")  # none: the image is left as it is (boxes only)
SHAPES = ("ellipse", "box")


@dataclass(frozen=True)
class BlurConfig:
    """How faces are masked: ``mode``, ``shape``, box growth ``mask_scale``, mosaic ``cells``, solid ``colour``."""

    mode: str = "blur"
    shape: str = "ellipse"  # the ellipse inscribed in the grown box, or the grown box itself
    mask_scale: float = 1.3  # box sides are multiplied by this around its centre before masking
    cells: int = 8  # blur and mosaic keep at most cells x cells averages of a masked region
    colour: tuple[int, int, int] = (0, 0, 0)  # RGB fill of mode "solid"

    def __post_init__(self):
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {self.mode!r}")
        if self.shape not in SHAPES:
            raise ValueError(f"shape must be one of {SHAPES}, got {self.shape!r}")
        if not (isinstance(self.mask_scale, numbers.Real) and math.isfinite(self.mask_scale) and self.mask_scale > 0):
            raise ValueError(f"mask_scale must be a number > 0, got {self.mask_scale!r}")
        if not (isinstance(self.cells, numbers.Integral) and self.cells >= 1):
            raise ValueError(f"cells must be an int >= 1, got {self.cells!r}")


def face_boxes(detections: Any) -> np.ndarray:
    """The (N, 4) x1 y1 x2 y2 boxes of a ``Detections`` (anything with ``.boxes``) or of an array."""
    boxes = np.asarray(getattr(detections, "boxes", detections), np.float64)
    if boxes.size == 0:
        return np.zeros((0, 4))
    if boxes.ndim == 1 and boxes.shape[0] == 4:
        boxes = boxes[None]
    if boxes.ndim != 2 or boxes.shape[1] != 4:
        raise ValueError(f"face boxes must be N x 4 (x1 y1 x2 y2), got shape {boxes.shape}")
    if not np.isfinite(boxes).all():
        raise ValueError("face boxes must be finite numbers")
    return boxes


def grow(boxes: np.ndarray, scale: float) -> np.ndarray:
    """Boxes with their sides multiplied by ``scale`` around the same centres."""
    centre = (boxes[:, 0:2] + boxes[:, 2:4]) / 2
    half = (boxes[:, 2:4] - boxes[:, 0:2]) * (scale / 2)
    return np.hstack([centre - half, centre + half])


def pixelate(region: np.ndarray, cell: int, smooth: bool) -> np.ndarray:
    """``region`` reduced to averages over cell x cell squares, enlarged back: blocks, or smoothed (blur)."""
    h, w = region.shape[:2]
    small = cv2.resize(region, (max(1, math.ceil(w / cell)), max(1, math.ceil(h / cell))),
                       interpolation=cv2.INTER_AREA)
    if not smooth:
        return cv2.resize(small, (w, h), interpolation=cv2.INTER_NEAREST)
    big = cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)
    k = cell | 1  # a box filter one cell wide takes out the bilinear ridges; its cost does not grow with k
    return cv2.blur(big, (k, k), borderType=cv2.BORDER_REPLICATE)


def ellipse_inside(box: np.ndarray, x0: int, y0: int, x1: int, y1: int) -> np.ndarray:
    """(y1-y0, x1-x0) bools: which pixel centres of that window lie in the ellipse inscribed in ``box``."""
    cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    rx, ry = max((box[2] - box[0]) / 2, 1e-6), max((box[3] - box[1]) / 2, 1e-6)
    dx = ((np.arange(x0, x1) + 0.5 - cx) / rx) ** 2
    dy = ((np.arange(y0, y1) + 0.5 - cy) / ry) ** 2
    return dy[:, None] + dx[None, :] <= 1


def mask_faces(image: np.ndarray, boxes: np.ndarray, config: BlurConfig = BlurConfig()) -> np.ndarray:
    """A copy of the RGB uint8 ``image`` with every face box masked as ``config`` says."""
    out = image.copy()
    if config.mode == "none":
        return out
    h, w = image.shape[:2]
    for box in grow(face_boxes(boxes), config.mask_scale):
        x0, y0 = max(math.floor(box[0]), 0), max(math.floor(box[1]), 0)
        x1, y1 = min(math.ceil(box[2]), w), min(math.ceil(box[3]), h)
        if x1 <= x0 or y1 <= y0:  # wholly outside the image
            continue
        region = out[y0:y1, x0:x1]
        if config.mode == "solid":
            masked = np.empty_like(region)
            masked[:] = config.colour
        else:  # one cell size for the whole box, also where part of it is outside the image
            cell = max(1, math.ceil(max(box[2] - box[0], box[3] - box[1]) / config.cells))
            masked = pixelate(region, cell, smooth=config.mode == "blur")
        if config.shape == "ellipse":  # written in place: OpenCV's masked copy is 2x faster than np.where here
            cv2.copyTo(masked, ellipse_inside(box, x0, y0, x1, y1).view(np.uint8), region)
        else:
            region[:] = masked
    return out


def anonymise(image: Any, detections: Any, mode: str = "blur", shape: str = "ellipse",
              mask_scale: float = 1.3) -> np.ndarray:
    """A new uint8 RGB array: ``image`` (path, bytes, PIL image or uint8 array) with its faces masked.

    ``detections``: a ``Detections`` or an N x 4 array of x1 y1 x2 y2 boxes. ``mode``: blur,
    mosaic, solid (black) or none; ``shape``: the ellipse inscribed in each box grown by
    ``mask_scale``, or that box.
    """
    from openmtcnn.detect import to_rgb

    return mask_faces(to_rgb(image, max_pixels=None), face_boxes(detections),
                      BlurConfig(mode=mode, shape=shape, mask_scale=mask_scale))
