"""Average precision as in PASCAL VOC: area under the monotone precision envelope."""
from __future__ import annotations

import numpy as np


def voc_ap(recall: np.ndarray, precision: np.ndarray) -> float:
    """AP over a PR curve given in order of increasing recall (all-points interpolation)."""
    mrec = np.concatenate([[0.0], recall, [1.0]])
    mpre = np.concatenate([[0.0], precision, [0.0]])
    mpre = np.maximum.accumulate(mpre[::-1])[::-1]
    i = np.nonzero(mrec[1:] != mrec[:-1])[0]
    return float(np.sum((mrec[i + 1] - mrec[i]) * mpre[i + 1]))


def inclusive_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pairwise IoU of x1 y1 x2 y2 boxes counting pixels inclusively (+1), as WIDER FACE's tools do."""
    iw = np.minimum(a[:, None, 2], b[None, :, 2]) - np.maximum(a[:, None, 0], b[None, :, 0]) + 1
    ih = np.minimum(a[:, None, 3], b[None, :, 3]) - np.maximum(a[:, None, 1], b[None, :, 1]) + 1
    inter = np.clip(iw, 0, None) * np.clip(ih, 0, None)
    area_a = (a[:, 2] - a[:, 0] + 1) * (a[:, 3] - a[:, 1] + 1)
    area_b = (b[:, 2] - b[:, 0] + 1) * (b[:, 3] - b[:, 1] + 1)
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(inter > 0, inter / np.where(union > 0, union, 1), 0.0)
