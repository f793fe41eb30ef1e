"""The MTCNN cascade: P-Net over an image pyramid, then R-Net and O-Net on batched crops."""
from __future__ import annotations

import math
import numbers
from typing import NamedTuple, Sequence

import cv2
import numpy as np

from openmtcnn.detect import boxes as B
from openmtcnn.detect.image import ImageLike, to_rgb

KEYPOINTS = ("left_eye", "right_eye", "nose", "mouth_left", "mouth_right")
STRIDE, CELL = 2, 12


class Detections(NamedTuple):
    """Faces found in one image, best first."""

    boxes: np.ndarray  # (N, 4) float32: x1, y1, x2, y2
    scores: np.ndarray  # (N,) float32
    landmarks: np.ndarray  # (N, 5, 2) float32: x, y of KEYPOINTS

    @classmethod
    def empty(cls) -> "Detections":
        return cls(np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros((0, 5, 2), np.float32))


class Candidates(NamedTuple):
    """What one stage passes to the next."""

    boxes: np.ndarray  # (N, 4) float64
    scores: np.ndarray  # (N,)
    landmarks: np.ndarray | None = None  # (N, 5, 2)

    def take(self, idx: np.ndarray) -> "Candidates":
        return Candidates(self.boxes[idx], self.scores[idx],
                          None if self.landmarks is None else self.landmarks[idx])


def pyramid_scales(height: int, width: int, min_face_size: float, scale_factor: float) -> list[float]:
    """Scales at which a 12-pixel window covers faces from min_face_size up to the image size."""
    m = CELL / min_face_size
    scales, side = [], min(height, width) * m
    while side >= CELL:
        scales.append(m * scale_factor ** len(scales))
        side *= scale_factor
    return scales


def pnet_candidates(prob: np.ndarray, offsets: np.ndarray, scale: float, threshold: float) -> Candidates:
    """Windows of one P-Net output map whose face probability passes the threshold."""
    ys, xs = np.nonzero(prob >= threshold)
    windows = np.stack([xs, ys, xs, ys], axis=1) * STRIDE + np.array([0, 0, CELL, CELL])
    boxes = B.regress(windows / scale, offsets[:, ys, xs].T)
    return Candidates(boxes, prob[ys, xs])


def is_number(x) -> bool:
    return isinstance(x, numbers.Real) and not isinstance(x, bool)


def check_settings(min_face_size, scale_factor, thresholds, nms_thresholds) -> None:
    """Raise ValueError naming the first setting that cannot work."""
    if not (is_number(min_face_size) and min_face_size >= 1):
        raise ValueError(f"min_face_size must be a number >= 1, got {min_face_size!r}")
    if not (is_number(scale_factor) and 0 < scale_factor < 1):
        raise ValueError(f"scale_factor must be in (0, 1), got {scale_factor!r}")
    for name, values, n in (("thresholds", thresholds, 3), ("nms_thresholds", nms_thresholds, 4)):
        try:
            ok = len(values) == n and all(is_number(t) and 0 <= t <= 1 for t in values)
        except TypeError:
            ok = False
        if not ok:
            raise ValueError(f"{name} must be {n} numbers in [0, 1], got {values!r}")


class MTCNN:
    """Face detector and five-point landmark locator.

    >>> faces = MTCNN().detect_faces("photo.jpg")  # [{"box", "confidence", "keypoints"}, ...]
    """

    def __init__(self, min_face_size: float = 20, scale_factor: float = 0.709,
                 thresholds: Sequence[float] = (0.6, 0.7, 0.7), nms_thresholds: Sequence[float] = (0.5, 0.7, 0.7, 0.7),
                 weights: str = "published", backend: str = "onnx", threads: int | None = None,
                 device: str | None = None):
        from openmtcnn.runtime import make_nets

        check_settings(min_face_size, scale_factor, thresholds, nms_thresholds)
        self.min_face_size, self.scale_factor = float(min_face_size), float(scale_factor)
        self.thresholds = tuple(float(t) for t in thresholds)
        self.nms_thresholds = tuple(float(t) for t in nms_thresholds)
        self.weights = weights
        self.nets = make_nets(weights, backend=backend, threads=threads, device=device)

    # ---- stages -------------------------------------------------------------------------------
    def propose(self, image: np.ndarray) -> Candidates:
        """P-Net on every pyramid scale; NMS within each scale, then across scales."""
        h, w = image.shape[:2]
        found = []
        for scale in pyramid_scales(h, w, self.min_face_size, self.scale_factor):
            size = (math.ceil(w * scale), math.ceil(h * scale))
            resized = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
            prob, offsets = self.nets("pnet", resized.transpose(2, 0, 1)[None].astype(np.float32))[:2]
            c = pnet_candidates(prob[0], offsets[0], scale, self.thresholds[0])
            found.append(c.take(B.nms(c.boxes, c.scores, self.nms_thresholds[0])))
        if not found:
            return Candidates(np.zeros((0, 4)), np.zeros(0))
        c = Candidates(np.concatenate([f.boxes for f in found]), np.concatenate([f.scores for f in found]))
        return c.take(B.nms(c.boxes, c.scores, self.nms_thresholds[1]))

    def refine(self, image: np.ndarray, c: Candidates, stage: str) -> Candidates:
        """R-Net or O-Net on square crops of the candidates: rescore, regress, NMS."""
        if len(c.boxes) == 0:
            return c
        threshold = self.thresholds[1] if stage == "rnet" else self.thresholds[2]
        size = 24 if stage == "rnet" else 48
        boxes = B.square(c.boxes)
        crops = B.crop_resize(image, boxes, size).transpose(0, 3, 1, 2)
        prob, offsets, *rest = self.nets(stage, crops)
        keep = prob > threshold
        boxes, scores, offsets = boxes[keep], prob[keep], offsets[keep]
        landmarks = None
        if rest:
            wh = (boxes[:, 2:4] - boxes[:, 0:2])[:, None, :]
            landmarks = boxes[:, None, 0:2] + wh * rest[0][keep].reshape(-1, 2, 5).transpose(0, 2, 1)
        if stage == "rnet":  # NMS on the crops' boxes, then move the survivors
            keep = B.nms(boxes, scores, self.nms_thresholds[2])
            return Candidates(B.regress(boxes[keep], offsets[keep]), scores[keep])
        out = Candidates(B.regress(boxes, offsets), scores, landmarks)
        return out.take(B.nms(out.boxes, out.scores, self.nms_thresholds[3], mode="min"))

    def detect_one(self, image: np.ndarray) -> Detections:
        """The whole cascade on one RGB uint8 image."""
        c = self.propose(image)
        c = self.refine(image, c, "rnet")
        c = self.refine(image, c, "onet")
        if len(c.boxes) == 0:
            return Detections.empty()
        h, w = image.shape[:2]
        landmarks = np.clip(c.landmarks, 0, [w, h])
        return Detections(B.clip(c.boxes, w, h).astype(np.float32), c.scores.astype(np.float32),
                          landmarks.astype(np.float32))

    # ---- public API ---------------------------------------------------------------------------
    def detect(self, images: ImageLike | Sequence[ImageLike]) -> Detections | list[Detections]:
        """Boxes (N, 4) x1 y1 x2 y2, scores (N,), landmarks (N, 5, 2) for an image or for each of a list."""
        if isinstance(images, (list, tuple)) or (isinstance(images, np.ndarray) and images.ndim == 4):
            return [self.detect_one(to_rgb(im)) for im in images]
        return self.detect_one(to_rgb(images))

    def detect_faces(self, image: ImageLike) -> list[dict]:
        """Faces as the ``mtcnn`` package gives them: box [x, y, w, h], confidence, keypoints."""
        d = self.detect_one(to_rgb(image))
        return to_dicts(d)


def to_dicts(d: Detections) -> list[dict]:
    """One dict per face, integer pixel coordinates, as in the ``mtcnn`` package."""
    boxes = np.rint(d.boxes).astype(int)
    points = np.rint(d.landmarks).astype(int)
    return [{"box": [int(b[0]), int(b[1]), int(b[2] - b[0]), int(b[3] - b[1])],
             "confidence": float(s),
             "keypoints": {k: (int(p[0]), int(p[1])) for k, p in zip(KEYPOINTS, pts)}}
            for b, s, pts in zip(boxes, d.scores, points)]
