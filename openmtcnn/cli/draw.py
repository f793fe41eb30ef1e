"""Annotated pictures: boxes, scores and the five landmarks drawn on an image."""
from __future__ import annotations

import cv2
import numpy as np

from openmtcnn.detect import Detections

POINT_COLOURS = [(255, 64, 64), (64, 64, 255), (64, 255, 64), (255, 200, 0), (255, 0, 255)]  # RGB


def annotate(image: np.ndarray, d: Detections) -> np.ndarray:
    """A copy of the RGB image with each face's box, score and landmarks."""
    out = image.copy()
    thick = max(1, round(max(image.shape[:2]) / 400))
    for box, score, points in zip(d.boxes.round().astype(int), d.scores, d.landmarks):
        cv2.rectangle(out, tuple(box[:2]), tuple(box[2:]), (0, 255, 0), thick)
        cv2.putText(out, f"{score:.2f}", (box[0], max(box[1] - 4, 10)), cv2.FONT_HERSHEY_SIMPLEX,
                    0.4 * thick, (0, 255, 0), thick, cv2.LINE_AA)
        for p, colour in zip(points.round().astype(int), POINT_COLOURS):
            cv2.circle(out, tuple(p), thick + 1, colour, -1, cv2.LINE_AA)
    return out


def write_image(path, rgb: np.ndarray) -> None:
    ok, buf = cv2.imencode(path.suffix or ".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    if not ok:
        raise ValueError(f"could not encode {path}")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(buf.tobytes())
