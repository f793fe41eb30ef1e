"""Small helpers shared by test modules (independent of the package under test)."""
from __future__ import annotations


def box_iou(a, b) -> float:
    """IoU of two x1 y1 x2 y2 boxes, written independently of the package."""
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0
