"""The MTCNN cascade: P-Net over an image pyramid, then R-Net and O-Net on batched crops."""
from __future__ import annotations

import math
import numbers
import os
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Iterator, NamedTuple, Sequence

import numpy as np

from openmtcnn.detect import boxes as B
from openmtcnn.detect.image import MAX_PIXELS, ImageLike, to_rgb
from openmtcnn.geometry import INPUT_SIZES, PNET_STRIDE, PNET_WINDOW
from openmtcnn.geometry import STAGES as NETS
from openmtcnn.runtime import pnet_strips

KEYPOINTS = ("left_eye", "right_eye", "nose", "mouth_left", "mouth_right")
STRIDE, CELL = PNET_STRIDE, PNET_WINDOW  # P-Net: one output per 12 x 12 window, stride 2
WORKER_CHUNK = 4  # images per task when a list runs on several workers
BAD_INPUT = (OSError, ValueError, TypeError)  # what reading an image that cannot be used raises
STAGES = (*NETS, "final")  # what MTCNN.run can stop after, in cascade order


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


Observer = Callable[[str, int, Candidates, float], None]
"""``observer(stage, image_index, candidates, seconds)``: called by ``MTCNN.run`` after every stage."""


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

    ``max_pixels``: larger images are refused with a ValueError, encoded ones from their header
    before decoding (None: no limit). Detection needs about 50 bytes of memory a pixel up to
    2**24 pixels, and under 15 above, where the summed-area table is made in bands (a 100-Mpx
    photo: under 1 GB at its peak; docs/reliability.md).
    """

    def __init__(self, min_face_size: float = 20, scale_factor: float = 0.709,
                 thresholds: Sequence[float] = (0.6, 0.7, 0.7), nms_thresholds: Sequence[float] = (0.5, 0.7, 0.7, 0.7),
                 weights: str = "published", backend: str = "auto", threads: int | None = None,
                 device: str | None = "auto", batch_size: int = 32, max_pixels: int | None = MAX_PIXELS):
        from openmtcnn.runtime import make_nets, runs_concurrently

        check_settings(min_face_size, scale_factor, thresholds, nms_thresholds)
        if not (max_pixels is None or (isinstance(max_pixels, numbers.Integral) and not isinstance(max_pixels, bool)
                                       and max_pixels >= 1)):
            raise ValueError(f"max_pixels must be an int >= 1 or None (no limit), got {max_pixels!r}")
        self.max_pixels = None if max_pixels is None else int(max_pixels)
        self.min_face_size, self.scale_factor = float(min_face_size), float(scale_factor)
        self.thresholds = tuple(float(t) for t in thresholds)
        self.nms_thresholds = tuple(float(t) for t in nms_thresholds)
        self.weights = weights
        if not (isinstance(batch_size, numbers.Integral) and batch_size >= 1):
            raise ValueError(f"batch_size must be an int >= 1, got {batch_size!r}")
        self.batch_size = int(batch_size)
        # On a CPU with ONNX Runtime, `threads` workers share single-threaded nets: the NumPy and
        # OpenCV work between net calls runs in parallel too. Other engines use threads inside each net.
        self.workers = max(1, int(threads or os.cpu_count() or 1)) if runs_concurrently(backend, device, weights) else 1
        self.nets = make_nets(weights, backend=backend, threads=1 if self.workers > 1 else threads, device=device)
        if threads:
            import cv2
            cv2.setNumThreads(int(threads))  # OpenCV's pool is process-wide (pyramid, crops, DNN)
        self._executor: ThreadPoolExecutor | None = None
        self._executor_pid = 0  # the process that started the worker threads

    # ---- stages -------------------------------------------------------------------------------
    def _pool(self) -> ThreadPoolExecutor:
        """The worker threads: started on first use, and again in a forked child, which inherits none of them."""
        if self._executor is None or self._executor_pid != os.getpid():
            self._executor = ThreadPoolExecutor(self.workers, thread_name_prefix="openmtcnn")
            self._executor_pid = os.getpid()
        return self._executor

    def _map(self, fn, parts: list) -> list:
        """``fn`` over ``parts``, on the worker threads when there are several parts."""
        if len(parts) <= 1:
            return [fn(p) for p in parts]
        return list(self._pool().map(fn, parts))

    def _stream(self, fn, items: Iterator, spread: int) -> list:
        """``fn`` over ``items`` as they come, on ``spread`` workers when > 1, few waiting (bounded memory)."""
        if spread <= 1:
            return [fn(item) for item in items]
        pending: deque = deque()
        done = []
        for item in items:
            pending.append(self._pool().submit(fn, item))
            if len(pending) > 2 * spread:
                done.append(pending.popleft().result())
        return done + [f.result() for f in pending]

    def propose(self, image: np.ndarray, integral: np.ndarray | B.BandedIntegral, spread: int = 1) -> Candidates:
        """P-Net on every pyramid scale; NMS within each scale, then across scales.

        Large levels are resized and scored in strips of rows (``runtime.pnet_strips``) that
        stay in cache. ``spread`` > 1 deals the strips to that many workers in groups of about
        equal area. A large image's table is banded (``geometry.BandedIntegral``): then all strips
        are resized in one pass down the image and scored by the workers as they come.
        """
        h, w = image.shape[:2]
        scales = pyramid_scales(h, w, self.min_face_size, self.scale_factor)
        sizes = [(math.ceil(w * s), math.ceil(h * s)) for s in scales]
        strips = [(k, part) for k, (lw, lh) in enumerate(sizes) for part in pnet_strips(lh, lw, self.nets.strips)]
        groups = balanced_groups([(part[2] - part[1]) * sizes[k][0] for k, part in strips], spread)
        pieces = np.bincount([k for k, _ in strips], minlength=len(scales))  # strips per level

        def score(i: int, level: np.ndarray | None = None) -> tuple[int, Candidates]:
            k, (first_row, start, stop) = strips[i]
            if level is None:
                level = B.area_resize(integral, *sizes[k], channels_first=True, rows=(start, stop))
            prob, offsets = self.nets("pnet", level[None])[:2]
            c = pnet_candidates(prob[0], offsets[0], scales[k], self.thresholds[0], first_row)
            if pieces[k] == 1:  # a whole level: NMS within it here, on the worker
                c = c.take(B.nms(c.boxes, c.scores, self.nms_thresholds[0]))
            return i, c

        if isinstance(integral, B.BandedIntegral):  # a large image: every strip resized in one pass down it
            levels = B.area_resizes(integral, [(*sizes[k], start, stop) for k, (_, start, stop) in strips], True)
            done = sorted(self._stream(lambda pair: score(*pair), levels, spread))
        else:
            done = sorted(pair for part in self._map(lambda g: [score(i) for i in g], groups) for pair in part)
        per_level: list[list[Candidates]] = [[] for _ in scales]
        for i, c in done:  # strips in order: a level's candidates as from one call
            per_level[strips[i][0]].append(c)
        found = [cs[0] if len(cs) == 1 else self.joined_nms(cs) for cs in per_level if cs]
        if not found:
            return Candidates(np.zeros((0, 4)), np.zeros(0))
        c = Candidates(np.concatenate([f.boxes for f in found]), np.concatenate([f.scores for f in found]))
        return c.take(B.nms(c.boxes, c.scores, self.nms_thresholds[1]))

    def joined_nms(self, parts: list[Candidates]) -> Candidates:
        """A level scored in strips: its candidates joined in row order, then NMS within the level."""
        c = Candidates(np.concatenate([p.boxes for p in parts]), np.concatenate([p.scores for p in parts]))
        return c.take(B.nms(c.boxes, c.scores, self.nms_thresholds[0]))

    def refine(self, images: Sequence[np.ndarray], integrals: Sequence[np.ndarray], cands: list[Candidates],
               stage: str, spread: int = 1) -> list[Candidates]:
        """R-Net or O-Net on square crops of every image's candidates, in one batch: rescore, regress, NMS.

        ``spread`` > 1 (one image) cuts its crops into that many parts, cropped and scored by
        the workers.
        """
        size = INPUT_SIZES[stage]
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
            outputs = self.nets(stage, np.concatenate(crops))
        splits = np.cumsum([len(sq) for sq in squares])[:-1]
        per_image = zip(*(np.split(o, splits) for o in outputs))
        return [self.judge(stage, sq, out) for sq, out in zip(squares, per_image)]

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

    def final(self, c: Candidates, width: int, height: int) -> Candidates:
        """The last NMS (overlap over the smaller box), then boxes clipped to the image, best first."""
        return Candidates(*finish(c.take(B.nms(c.boxes, c.scores, self.nms_thresholds[3], mode="min")), width, height))

    def rescore(self, image: ImageLike, boxes: np.ndarray) -> Detections:
        """R-Net, O-Net and the final NMS on given boxes in place of P-Net's proposals: faces near known places.

        Cheaper than ``detect`` when the places are known, e.g. a tracker's predicted boxes between
        full detections; ``rescore(image, run(image, until="pnet").boxes)`` is ``detect(image)``.
        """
        image = self.read(image)
        boxes = np.asarray(boxes, np.float64)
        if boxes.size and (boxes.ndim != 2 or boxes.shape[1] != 4 or not np.isfinite(boxes).all()):
            raise ValueError(f"boxes must be an N x 4 array of finite x1 y1 x2 y2, got shape {boxes.shape}")
        c = Candidates(boxes.reshape(-1, 4), np.ones(len(boxes.reshape(-1, 4))))
        if len(c.boxes):
            integrals = [B.integral_image(image)]
            for stage in NETS[1:]:
                c = self.refine([image], integrals, [c], stage, self.workers)[0]
        return Detections(*self.final(c, image.shape[1], image.shape[0]))

    def cascade(self, images: Sequence[np.ndarray], until: str = "final", observer: Observer | None = None,
                spread: int = 1, first: int = 0) -> list[Candidates]:
        """The stages up to ``until`` on RGB uint8 images: P-Net per image, R-Net and O-Net batched across them.

        ``spread``: workers that share one image's levels and crops (see ``propose``, ``refine``);
        ``first``: the index of ``images[0]`` reported to ``observer``.
        """
        report = observer or (lambda *args: None)
        integrals, cands = [], []  # one integral image per image: pyramid and crops
        for i, im in enumerate(images):
            t = time.perf_counter()
            integrals.append(B.integral_image(im))
            cands.append(self.propose(im, integrals[-1], spread))
            report("pnet", first + i, cands[-1], time.perf_counter() - t)
        for stage in STAGES[1:STAGES.index(until) + 1]:
            t = time.perf_counter()
            if stage == "final":
                cands = [self.final(c, im.shape[1], im.shape[0]) for c, im in zip(cands, images)]
            else:
                cands = self.refine(images, integrals, cands, stage, spread)
            seconds = time.perf_counter() - t
            for i, c in enumerate(cands):
                report(stage, first + i, c, seconds)
        return cands

    # ---- public API ---------------------------------------------------------------------------
    def read(self, image: ImageLike) -> np.ndarray:
        """One image as RGB uint8 (``to_rgb``), within this detector's ``max_pixels``."""
        return to_rgb(image, self.max_pixels)

    def _read_item(self, image: ImageLike, index: int, return_exceptions: bool) -> np.ndarray | Exception:
        """Item ``index`` of a list as RGB uint8; when it cannot be read, the error names the index."""
        try:
            return self.read(image)
        except BAD_INPUT as e:
            error = at_index(e, index)
            if return_exceptions:
                return error
            if error is e:
                raise
            raise error from e

    def run(self, images: ImageLike | Sequence[ImageLike], until: str = "final", observer: Observer | None = None,
            return_exceptions: bool = False) -> Candidates | list[Candidates | Exception]:
        """The cascade up to stage ``until`` (one of ``STAGES``): each image's candidates after it.

        ``observer(stage, image_index, candidates, seconds)`` is called after every stage, on this
        thread and in image order; ``seconds`` is the stage's time for the image (P-Net) or for
        the batch of images it ran in (later stages; one image: its own). ``until="final"`` gives
        the detections' boxes, scores and landmarks. An image or a list, as ``detect``; in a list,
        an item that cannot be read raises an error naming its index, or with ``return_exceptions``
        takes that error's place in the results.
        """
        if until not in STAGES:
            raise ValueError(f"until must be one of {STAGES}, got {until!r}")
        if not (isinstance(images, (list, tuple)) or (isinstance(images, np.ndarray) and images.ndim == 4)):
            return self.cascade([self.read(images)], until, observer, self.workers)[0]
        # Several workers: each takes a few whole images; otherwise chunks of batch_size. With an
        # observer the list stays on this thread, so that it hears of the images in order.
        parallel = self.workers > 1 and observer is None
        step = min(self.batch_size, WORKER_CHUNK) if parallel else self.batch_size

        def work(start: int) -> list[Candidates | Exception]:
            chunk = images[start:start + step]
            done = [self._read_item(im, start + k, return_exceptions) for k, im in enumerate(chunk)]
            good = [k for k, im in enumerate(done) if not isinstance(im, Exception)]
            if good:  # the observer hears of each image by its index in the whole list
                hear = observer and (lambda stage, i, c, seconds: observer(stage, start + good[i], c, seconds))
                for k, c in zip(good, self.cascade([done[k] for k in good], until, hear)):
                    done[k] = c
            return done

        starts = list(range(0, len(images), step))
        parts = self._map(work, starts) if parallel else [work(start) for start in starts]
        return [c for part in parts for c in part]

    def detect(self, images: ImageLike | Sequence[ImageLike],
               return_exceptions: bool = False) -> Detections | list[Detections | Exception]:
        """Boxes (N, 4) x1 y1 x2 y2, scores (N,), landmarks (N, 5, 2) for an image or for each of a list.

        A list is processed in chunks of ``batch_size`` images whose R-Net and O-Net crops share
        one batch. An image that cannot be read raises (in a list, naming its index); with
        ``return_exceptions=True`` its slot holds that exception and the others their detections.
        """
        found = self.run(images, return_exceptions=return_exceptions)
        if not isinstance(found, list):
            return Detections(*found)
        return [c if isinstance(c, Exception) else Detections(*c) for c in found]

    def detect_faces(self, image: ImageLike) -> list[dict]:
        """Faces as the ``mtcnn`` package gives them: box [x, y, w, h], confidence, keypoints."""
        return to_dicts(Detections(*self.cascade([self.read(image)], spread=self.workers)[0]))


def at_index(error: Exception, index: int) -> Exception:
    """``error`` of the same type with the list index of the image it is about in front of its message."""
    try:
        indexed = type(error)(f"image {index} of the list: {error}")
    except Exception:  # an exception type that takes other arguments: keep it as it is
        return error
    indexed.__cause__ = error
    return indexed


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
