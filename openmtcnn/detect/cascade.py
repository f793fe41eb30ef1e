"""The MTCNN cascade: P-Net over an image pyramid, then R-Net and O-Net on batched crops."""
from __future__ import annotations

import math
import numbers
import os
import time
from concurrent.futures import ThreadPoolExecutor
from typing import NamedTuple, Sequence

import numpy as np

from openmtcnn.detect import boxes as B
from openmtcnn.detect.image import ImageLike, to_rgb
from openmtcnn.runtime import PNET_STRIDE, PNET_WINDOW, pnet_strips

KEYPOINTS = ("left_eye", "right_eye", "nose", "mouth_left", "mouth_right")
STRIDE, CELL = PNET_STRIDE, PNET_WINDOW  # P-Net: one output per 12 x 12 window, stride 2
WORKER_CHUNK = 4  # images per task when a list runs on several workers


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


def pnet_candidates(prob: np.ndarray, offsets: np.ndarray, scale: float, threshold: float,
                    first_row: int = 0) -> Candidates:
    """Windows of one P-Net output map (or of its rows from ``first_row`` on) that pass the threshold."""
    ys, xs = np.nonzero(prob >= threshold)
    windows = np.stack([xs, ys + first_row, xs, ys + first_row], axis=1) * STRIDE + np.array([0, 0, CELL, CELL])
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
                 weights: str = "published", backend: str = "auto", threads: int | None = None,
                 device: str | None = "auto", batch_size: int = 32):
        from openmtcnn.runtime import make_nets, runs_concurrently

        check_settings(min_face_size, scale_factor, thresholds, nms_thresholds)
        self.min_face_size, self.scale_factor = float(min_face_size), float(scale_factor)
        self.thresholds = tuple(float(t) for t in thresholds)
        self.nms_thresholds = tuple(float(t) for t in nms_thresholds)
        self.weights = weights
        if not (isinstance(batch_size, numbers.Integral) and batch_size >= 1):
            raise ValueError(f"batch_size must be an int >= 1, got {batch_size!r}")
        self.batch_size = int(batch_size)
        self.stage_times: dict[str, float] | None = None  # set to {} to collect seconds per stage
        self.traces: list[dict[str, np.ndarray]] | None = None  # set to [] to keep every stage's boxes
        # On a CPU with ONNX Runtime, `threads` workers share single-threaded nets: the NumPy and
        # OpenCV work between net calls runs in parallel too. Other engines use threads inside each net.
        self.workers = max(1, int(threads or os.cpu_count() or 1)) if runs_concurrently(backend, device, weights) else 1
        self.nets = make_nets(weights, backend=backend, threads=1 if self.workers > 1 else threads, device=device)
        if threads:
            import cv2
            cv2.setNumThreads(int(threads))  # OpenCV's pool is process-wide (pyramid, crops, DNN)
        self._executor: ThreadPoolExecutor | None = None

    # ---- stages -------------------------------------------------------------------------------
    def _tick(self, name: str, start: float) -> float:
        """Add the time since ``start`` to stage ``name`` when timing is on; return now."""
        now = time.perf_counter()
        if self.stage_times is not None:
            self.stage_times[name] = self.stage_times.get(name, 0.0) + now - start
        return now

    def _map(self, fn, parts: list) -> list:
        """``fn`` over ``parts``, on the worker threads when there are several parts."""
        if len(parts) <= 1:
            return [fn(p) for p in parts]
        if self._executor is None:
            self._executor = ThreadPoolExecutor(self.workers, thread_name_prefix="openmtcnn")
        return list(self._executor.map(fn, parts))

    def propose(self, image: np.ndarray, integral: np.ndarray, spread: int = 1) -> Candidates:
        """P-Net on every pyramid scale; NMS within each scale, then across scales.

        Large levels are resized and scored in strips of rows (``runtime.pnet_strips``) that
        stay in cache. ``spread`` > 1 deals the strips to that many workers in groups of about
        equal area; the whole parallel section is then timed as the "pnet" stage.
        """
        h, w = image.shape[:2]
        scales = pyramid_scales(h, w, self.min_face_size, self.scale_factor)
        sizes = [(math.ceil(w * s), math.ceil(h * s)) for s in scales]
        strips = [(k, part) for k, (lw, lh) in enumerate(sizes) for part in pnet_strips(lh, lw, self.nets.strips)]
        t = time.perf_counter()
        groups = balanced_groups([(part[2] - part[1]) * sizes[k][0] for k, part in strips], spread)
        tick = self._tick if len(groups) == 1 else (lambda name, start: time.perf_counter())
        pieces = np.bincount([k for k, _ in strips], minlength=len(scales))  # strips per level

        def score(i: int) -> tuple[int, Candidates]:
            k, (first_row, start, stop) = strips[i]
            t = time.perf_counter()
            level = B.area_resize(integral, *sizes[k], channels_first=True, rows=(start, stop))
            t = tick("pyramid", t)
            prob, offsets = self.nets("pnet", level[None])[:2]
            t = tick("pnet", t)
            c = pnet_candidates(prob[0], offsets[0], scales[k], self.thresholds[0], first_row)
            if pieces[k] == 1:  # a whole level: NMS within it here, on the worker
                c = c.take(B.nms(c.boxes, c.scores, self.nms_thresholds[0]))
            tick("pnet_nms", t)
            return i, c

        done = sorted(pair for part in self._map(lambda g: [score(i) for i in g], groups) for pair in part)
        per_level: list[list[Candidates]] = [[] for _ in scales]
        for i, c in done:  # strips in order: a level's candidates as from one call
            per_level[strips[i][0]].append(c)
        t = self._tick("pnet", t) if len(groups) > 1 else time.perf_counter()
        found = [cs[0] if len(cs) == 1 else self.joined_nms(cs) for cs in per_level if cs]
        if not found:
            return Candidates(np.zeros((0, 4)), np.zeros(0))
        c = Candidates(np.concatenate([f.boxes for f in found]), np.concatenate([f.scores for f in found]))
        c = c.take(B.nms(c.boxes, c.scores, self.nms_thresholds[1]))
        self._tick("pnet_nms", t)
        return c

    def joined_nms(self, parts: list[Candidates]) -> Candidates:
        """A level scored in strips: its candidates joined in row order, then NMS within the level."""
        c = Candidates(np.concatenate([p.boxes for p in parts]), np.concatenate([p.scores for p in parts]))
        return c.take(B.nms(c.boxes, c.scores, self.nms_thresholds[0]))

    def refine(self, images: Sequence[np.ndarray], integrals: Sequence[np.ndarray], cands: list[Candidates],
               stage: str, spread: int = 1) -> list[Candidates]:
        """R-Net or O-Net on square crops of every image's candidates, in one batch: rescore, regress, NMS.

        ``spread`` > 1 (one image) cuts its crops into that many parts, cropped and scored by
        the workers; the parallel section is then timed as the net's stage.
        """
        size = 24 if stage == "rnet" else 48
        t = time.perf_counter()
        squares = [B.square(c.boxes) for c in cands]
        if not any(len(sq) for sq in squares):
            return cands
        if spread > 1 and len(images) == 1:
            parts = np.array_split(np.arange(len(squares[0])), min(spread, max(1, len(squares[0]) // 8)))
            work = lambda idx: self.nets(stage, B.crop_resize(images[0], squares[0][idx], size, channels_first=True,  # noqa: E731
                                                              integral=integrals[0]))
            outputs = tuple(np.concatenate(o) for o in zip(*self._map(work, parts)))
        else:
            crops = [B.crop_resize(im, sq, size, channels_first=True, integral=s)
                     for im, s, sq in zip(images, integrals, squares) if len(sq)]
            t = self._tick(f"{stage}_crop", t)
            outputs = self.nets(stage, np.concatenate(crops))
        t = self._tick(stage, t)
        splits = np.cumsum([len(sq) for sq in squares])[:-1]
        per_image = zip(*(np.split(o, splits) for o in outputs))
        result = [self.judge(stage, sq, out) for sq, out in zip(squares, per_image)]
        self._tick(f"{stage}_nms", t)
        return result

    def judge(self, stage: str, boxes: np.ndarray, outputs: tuple[np.ndarray, ...]) -> Candidates:
        """Keep one image's crops that the net scores above threshold and move them by its offsets.

        R-Net's survivors then go through NMS; O-Net's wait for the final NMS.
        """
        prob, offsets, *rest = outputs
        keep = prob > (self.thresholds[1] if stage == "rnet" else self.thresholds[2])
        boxes, scores, offsets = boxes[keep], prob[keep], offsets[keep]
        if stage == "rnet":  # NMS on the crops' boxes, then move the survivors
            keep = B.nms(boxes, scores, self.nms_thresholds[2])
            return Candidates(B.regress(boxes[keep], offsets[keep]), scores[keep])
        wh = (boxes[:, 2:4] - boxes[:, 0:2])[:, None, :]
        landmarks = boxes[:, None, 0:2] + wh * rest[0][keep].reshape(-1, 2, 5).transpose(0, 2, 1)
        return Candidates(B.regress(boxes, offsets), scores, landmarks)  # the final NMS comes after

    def detect_batch(self, images: Sequence[np.ndarray], spread: int = 1) -> list[Detections]:
        """The whole cascade on RGB uint8 images: P-Net per image, R-Net and O-Net batched across them.

        ``spread``: workers that share one image's levels and crops (see ``propose``, ``refine``).
        """
        t = time.perf_counter()
        integrals = [B.integral_image(im) for im in images]  # one per image: pyramid and crops
        self._tick("pyramid", t)
        cands = [self.propose(im, s, spread) for im, s in zip(images, integrals)]
        proposed = cands
        cands = self.refine(images, integrals, cands, "rnet", spread)
        refined = cands
        scored = self.refine(images, integrals, cands, "onet", spread)
        t = time.perf_counter()
        cands = [c.take(B.nms(c.boxes, c.scores, self.nms_thresholds[3], mode="min")) for c in scored]
        out = [finish(c, im.shape[1], im.shape[0]) for c, im in zip(cands, images)]
        self._tick("rest", t)
        if self.traces is not None:  # every stage's boxes, for diagnosing where faces are lost
            self.traces += [{"pnet": p.boxes, "rnet": r.boxes, "onet": o.boxes, "final": d.boxes}
                            for p, r, o, d in zip(proposed, refined, scored, out)]
        return out

    # ---- public API ---------------------------------------------------------------------------
    def detect(self, images: ImageLike | Sequence[ImageLike]) -> Detections | list[Detections]:
        """Boxes (N, 4) x1 y1 x2 y2, scores (N,), landmarks (N, 5, 2) for an image or for each of a list.

        A list is processed in chunks of ``batch_size`` images whose R-Net and O-Net crops share
        one batch. An image that cannot be read raises; decode beforehand to skip bad files.
        """
        if isinstance(images, (list, tuple)) or (isinstance(images, np.ndarray) and images.ndim == 4):
            # Several workers: each takes a few whole images; otherwise chunks of batch_size. Stage
            # timing and traces (shared, in image order) keep the list on this thread.
            parallel = self.workers > 1 and self.stage_times is None and self.traces is None
            step = min(self.batch_size, WORKER_CHUNK) if parallel else self.batch_size
            chunks = [images[start:start + step] for start in range(0, len(images), step)]
            run = lambda chunk: self.detect_batch([to_rgb(im) for im in chunk])  # noqa: E731
            done = self._map(run, chunks) if parallel else [run(chunk) for chunk in chunks]
            return [d for part in done for d in part]
        return self.detect_one(images)

    def detect_one(self, image: ImageLike) -> Detections:
        """One image, its levels and crops spread over the workers."""
        return self.detect_batch([to_rgb(image)], self.workers)[0]

    def detect_faces(self, image: ImageLike) -> list[dict]:
        """Faces as the ``mtcnn`` package gives them: box [x, y, w, h], confidence, keypoints."""
        return to_dicts(self.detect_one(image))


def finish(c: Candidates, width: int, height: int) -> Detections:
    """Final detections of one image: float32, inside the image, best first."""
    if len(c.boxes) == 0:
        return Detections.empty()
    order = np.argsort(-c.scores, kind="stable")
    landmarks = np.clip(c.landmarks[order], 0, [width, height])
    return Detections(B.clip(c.boxes[order], width, height).astype(np.float32), c.scores[order].astype(np.float32),
                      landmarks.astype(np.float32))


def balanced_groups(weights: Sequence[float], n: int) -> list[list[int]]:
    """Indices of ``weights`` in at most ``n`` groups of about equal total, heaviest first (LPT)."""
    groups: list[list[int]] = [[] for _ in range(max(1, min(n, len(weights))))]
    totals = [0.0] * len(groups)
    for k in sorted(range(len(weights)), key=lambda k: -weights[k]):
        g = totals.index(min(totals))
        groups[g].append(k)
        totals[g] += weights[k]
    return [g for g in groups if g]


def to_dicts(d: Detections) -> list[dict]:
    """One dict per face, integer pixel coordinates, as in the ``mtcnn`` package."""
    boxes = np.rint(d.boxes).astype(int)
    points = np.rint(d.landmarks).astype(int)
    return [{"box": [int(b[0]), int(b[1]), int(b[2] - b[0]), int(b[3] - b[1])],
             "confidence": float(s),
             "keypoints": {k: (int(p[0]), int(p[1])) for k, p in zip(KEYPOINTS, pts)}}
            for b, s, pts in zip(boxes, d.scores, points)]
