"""Faces followed from frame to frame, so that a face the detector misses for a few frames stays masked.

A small tracker of its own rather than a library: ``trackers`` brings in opencv-python (which
clashes with the headless OpenCV the package uses), supervision, matplotlib and requests, and
``norfair`` pins NumPy below 2. Faces in a video move smoothly and MTCNN's boxes are tight, so a
greedy IoU match and a constant-velocity alpha-beta filter (the steady-state Kalman filter of
that motion model) on each box's centre and size are enough; every step is a few array
operations over all tracks at once.

A moving camera moves every face at once: a pan shifts them, a zoom scales them about a point.
With ``camera`` on, each frame's motion is estimated from all the tracks found again (the
least-squares shift and scale taking their last boxes to the new ones, faces that move on their
own left out) and applied to every track before its own velocity, which is then only what the
face adds to the camera's motion. Faces the detector misses for a while follow the crowd, and
a new track starts with the camera's motion rather than at rest.
"""
from __future__ import annotations

import numbers
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from openmtcnn.geometry import iou_matrix


@dataclass(frozen=True)
class TrackConfig:
    """How long tracks live and how they follow their faces."""

    keep: int = 24  # frames a track stays masked after its last detection (0: only detected faces)
    min_iou: float = 0.3  # overlap of a predicted box with a detection that continues its track
    alpha: float = 0.75  # share of the measured box taken; the rest is the prediction
    beta: float = 0.45  # share of the surprise added to the velocity (critically damped: alpha**2 / (2 - alpha))
    growth: float = 0.1  # a box not detected grows by this share of its size per missed frame (it is less sure)
    camera: bool = True  # estimate the frame's pan and zoom from all tracks and move every track with it

    def __post_init__(self):
        if not (isinstance(self.keep, numbers.Integral) and self.keep >= 0):
            raise ValueError(f"keep must be an int >= 0, got {self.keep!r}")
        if not 0 <= self.min_iou <= 1:
            raise ValueError(f"min_iou must be in [0, 1], got {self.min_iou!r}")


class Faces(NamedTuple):
    """The faces to mask in one frame: detected ones and tracks coasting after a miss."""

    boxes: np.ndarray  # (N, 4) x1 y1 x2 y2
    scores: np.ndarray  # (N,) the last detection score of each track
    ids: np.ndarray  # (N,) track numbers, from 0 in order of appearance
    missed: np.ndarray  # (N,) frames since each track's last detection (0: detected in this frame)


def to_state(boxes: np.ndarray) -> np.ndarray:
    """x1 y1 x2 y2 -> centre x, centre y, width, height."""
    return np.hstack([(boxes[:, 0:2] + boxes[:, 2:4]) / 2, boxes[:, 2:4] - boxes[:, 0:2]])


def to_boxes(state: np.ndarray, scale: np.ndarray | float = 1.0) -> np.ndarray:
    """centre x, centre y, width, height (times ``scale``) -> x1 y1 x2 y2."""
    half = state[:, 2:4] * (np.reshape(scale, (-1, 1)) / 2)
    return np.hstack([state[:, 0:2] - half, state[:, 0:2] + half])


def apply_motion(motion: np.ndarray, state: np.ndarray) -> np.ndarray:
    """States moved by a camera motion ``(scale, dx, dy)``: centres scaled about the origin and shifted, sizes scaled."""
    scale, shift = motion[0], motion[1:3]
    return np.hstack([state[:, 0:2] * scale + shift, state[:, 2:4] * scale])


def estimate_motion(before: np.ndarray, after: np.ndarray, min_faces: int = 3) -> np.ndarray | None:
    """The camera motion ``(scale, dx, dy)`` taking the states ``before`` to ``after`` (rows paired), or None.

    Least squares over every face's centre and size, each face's equations divided by its size
    (a pixel counts more on a small face); then once more without the faces whose residual is
    over three times the median (they move on their own). None with fewer than ``min_faces``, or
    when the scale is far from 1 (faces matched wrongly, not a camera's motion between frames).
    """
    if len(before) < min_faces:
        return None
    size = np.maximum(before[:, 2:4].mean(axis=1, keepdims=True), 1.0)
    n = len(before)
    a = np.zeros((n, 4, 3))  # per face: x, y, w, h equations; unknowns scale, dx, dy
    a[:, :, 0] = before
    a[:, 0, 1] = a[:, 1, 2] = 1.0
    a, b = a / size[:, :, None], after / size
    use = np.ones(n, bool)
    for _ in range(2):
        motion = np.linalg.lstsq(a[use].reshape(-1, 3), b[use].reshape(-1), rcond=None)[0]
        residual = np.linalg.norm(a @ motion - b, axis=1)
        use = residual <= 3 * np.median(residual) + 1e-3
        if use.sum() < min_faces:
            break
    return motion if 0.5 < motion[0] < 2 else None  # not a camera's motion from one frame to the next


def greedy_match(overlap: np.ndarray, min_overlap: float) -> tuple[np.ndarray, np.ndarray]:
    """(rows, cols) of matched pairs, best overlap first, each row and column used once, none below min_overlap."""
    rows, cols = np.nonzero(overlap >= max(min_overlap, 1e-9))
    order = np.argsort(-overlap[rows, cols], kind="stable")
    used_rows, used_cols, keep = set(), set(), []
    for k in order:  # pairs are few (faces in one frame)
        if rows[k] not in used_rows and cols[k] not in used_cols:
            used_rows.add(rows[k])
            used_cols.add(cols[k])
            keep.append(k)
    keep = np.array(keep, int)
    return rows[keep], cols[keep]


class Tracks:
    """The live face tracks of one video, one row per track; call ``predict`` then ``update`` for each frame."""

    def __init__(self, config: TrackConfig = TrackConfig()):
        self.config = config
        self.state = np.zeros((0, 4))  # centre x, centre y, width, height
        self.velocity = np.zeros((0, 4))  # change of the state per frame
        self.missed = np.zeros(0, int)
        self.scores = np.zeros(0)
        self.ids = np.zeros(0, int)
        self.next_id = 0
        self.motion = np.array([1.0, 0.0, 0.0])  # the camera's last motion per frame: scale, dx, dy
        self.before = self.state  # the states before ``predict``: where the camera's motion is measured from

    def predict(self) -> np.ndarray:
        """Move every track one frame on; its predicted boxes x1 y1 x2 y2 (where to look for its face)."""
        self.before = self.state
        moved = apply_motion(self.motion, self.state) if self.config.camera else self.state
        self.state = moved + self.velocity
        self.state[:, 2:4] = np.maximum(self.state[:, 2:4], 1.0)
        return to_boxes(self.state)

    def update(self, boxes: np.ndarray, scores: np.ndarray) -> Faces:
        """Match this frame's detections to the tracks, start tracks for the others, end those missed too long."""
        boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
        scores = np.asarray(scores, np.float64).reshape(-1)
        rows, cols = greedy_match(iou_matrix(to_boxes(self.state), boxes), self.config.min_iou)
        measured = to_state(boxes)
        if self.config.camera:  # from the tracks found in the last frame and again in this one
            seen = self.missed[rows] == 0
            motion = estimate_motion(self.before[rows[seen]], measured[cols[seen]])
            self.motion = np.array([1.0, 0.0, 0.0]) if motion is None else motion
            # predicted again with this frame's motion: the velocities learn only what the faces add to it
            self.state = apply_motion(self.motion, self.before) + self.velocity
        surprise = measured[cols] - self.state[rows]
        self.state[rows] += self.config.alpha * surprise
        self.velocity[rows] += self.config.beta * surprise
        self.missed += 1
        self.missed[rows] = 0
        self.scores[rows] = scores[cols]
        shown = to_boxes(self.state, 1 + self.config.growth * self.missed)
        shown[rows] = boxes[cols]  # a detected face is masked where it was found, not where the filter has it
        new = np.setdiff1d(np.arange(len(boxes)), cols)
        self._start(measured[new], scores[new])
        shown = np.vstack([shown, boxes[new]])
        alive = self.missed <= self.config.keep
        for name in ("state", "velocity", "missed", "scores", "ids"):
            setattr(self, name, getattr(self, name)[alive])
        return Faces(shown[alive], self.scores.copy(), self.ids.copy(), self.missed.copy())

    def _start(self, state: np.ndarray, scores: np.ndarray) -> None:
        """New tracks, at rest, for detections that continue none."""
        n = len(state)
        self.state = np.vstack([self.state, state])
        self.velocity = np.vstack([self.velocity, np.zeros((n, 4))])
        self.missed = np.concatenate([self.missed, np.zeros(n, int)])
        self.scores = np.concatenate([self.scores, scores])
        self.ids = np.concatenate([self.ids, np.arange(self.next_id, self.next_id + n)])
        self.next_id += n
