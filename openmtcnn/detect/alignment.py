"""Face alignment: a similarity transform of the five landmarks onto a standard template."""
from __future__ import annotations

import numbers

import cv2
import numpy as np

from openmtcnn.detect.image import ImageLike, to_rgb

# Five-point template for 112 x 112 crops (eyes, nose tip, mouth corners), the layout that
# face recognition models such as ArcFace are trained on.
TEMPLATE_112 = np.array([[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366],
                         [41.5493, 92.3655], [70.7299, 92.2041]], np.float64)


def similarity_transform(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Least-squares rotation + uniform scale + translation taking src points to dst (Umeyama), 2 x 3."""
    mu_s, mu_d = src.mean(0), dst.mean(0)
    s, d = src - mu_s, dst - mu_d
    cov = d.T @ s / len(src)
    u, sig, vt = np.linalg.svd(cov)
    sign = np.diag([1.0, np.sign(np.linalg.det(u @ vt)) or 1.0])
    rot = u @ sign @ vt
    scale = np.trace(np.diag(sig) @ sign) / max(s.var(0).sum(), 1e-12)
    return np.hstack([scale * rot, (mu_d - scale * rot @ mu_s)[:, None]])


def align(image: ImageLike, landmarks: np.ndarray, size: int = 112) -> np.ndarray:
    """Aligned face crops, (N, size, size, 3) uint8 RGB, for landmarks of shape (N, 5, 2) or (5, 2)."""
    img = to_rgb(image)
    pts = np.asarray(landmarks, np.float64)
    single = pts.ndim == 2
    pts = pts[None] if single else pts
    if pts.ndim != 3 or pts.shape[1:] != (5, 2):
        raise ValueError(f"landmarks must have shape (5, 2) or (N, 5, 2), got {np.shape(landmarks)}")
    if not (isinstance(size, numbers.Integral) and not isinstance(size, bool) and size > 0):
        raise ValueError(f"size must be a positive int, got {size!r}")
    size = int(size)
    template = TEMPLATE_112 * (size / 112.0)
    crops = [cv2.warpAffine(img, similarity_transform(p, template), (size, size), flags=cv2.INTER_LINEAR,
                            borderMode=cv2.BORDER_CONSTANT) for p in pts]
    out = np.stack(crops) if crops else np.zeros((0, size, size, 3), np.uint8)
    return out[0] if single else out
