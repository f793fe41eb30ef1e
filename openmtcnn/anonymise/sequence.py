"""Masking the frames of a video in order: the full cascade every K frames, R-Net and O-Net on the tracks between.

Between full frames, faces can also come into view at the frame's edges, as the camera pans
or zooms out. The tracker's estimate of the camera's motion says which edges were not in view
at the last look; P-Net scans strips along them (``edge_depth`` pixels beyond the new ones),
and its proposals go to R-Net and O-Net with the tracked faces, in one batch.
"""
from __future__ import annotations

import numbers
from dataclasses import dataclass, field

import numpy as np

from openmtcnn.anonymise.mask import BlurConfig, mask_faces
from openmtcnn.anonymise.track import Faces, TrackConfig, Tracks
from openmtcnn.detect import MTCNN

# Detector settings for anonymisation, tuned for recall: a missed face is the failure that matters,
# a false one only masks a patch of background. At the detection defaults (0.6, 0.7, 0.7), R-Net
# and O-Net reject 26% of the 20-40 px faces of WIDER FACE val (docs/accuracy.md, "Where faces are
# lost"); the authors' own evaluation thresholds (0.5, 0.5, 0.3) keep more of them. The smallest
# face stays at 20 px: faces below it are hardly recognisable, and halving it costs P-Net 4x.
RECALL_SETTINGS = {"min_face_size": 20.0, "thresholds": (0.5, 0.5, 0.3)}


@dataclass(frozen=True)
class SequenceConfig:
    """How a sequence of frames is masked: the mask, the tracks, and how often the full cascade runs."""

    blur: BlurConfig = field(default_factory=BlurConfig)
    track: TrackConfig = field(default_factory=TrackConfig)
    detect_every: int = 1  # the full cascade on every K-th frame; R-Net + O-Net on the tracks in between
    edge_depth: float = 48.0  # between full frames: P-Net on edges come into view, this deep past them (0: off)
    edge_step: float = 4.0  # px of an edge come into view before it is scanned

    def __post_init__(self):
        if not (isinstance(self.detect_every, numbers.Integral) and self.detect_every >= 1):
            raise ValueError(f"detect_every must be an int >= 1, got {self.detect_every!r}")
        for name in ("edge_depth", "edge_step"):
            value = getattr(self, name)
            if not (isinstance(value, numbers.Real) and np.isfinite(value) and value >= 0):
                raise ValueError(f"{name} must be a number >= 0, got {value!r}")


def new_edges(seen: np.ndarray, width: int, height: int, step: float) -> tuple[np.ndarray, np.ndarray]:
    """Px of the frame outside ``seen`` at each edge (left, top, right, bottom), and which of them reach ``step``."""
    gaps = np.array([seen[0], seen[1], width - seen[2], height - seen[3]])
    return gaps, gaps >= max(step, 1e-9)


def edge_strips(seen: np.ndarray, width: int, height: int, depth: float, step: float) -> np.ndarray:
    """(N, 4) x0 y0 x1 y1 integer strips along the edges of the frame that lie outside ``seen`` by ``step`` px or more.

    Each strip reaches ``depth`` px past the part not seen, into the part seen: a face cut by
    the edge of the last look lies whole inside it.
    """
    gaps, scanned = new_edges(seen, width, height, step)
    reach = np.ceil(np.round(np.clip(gaps, 0, None) + depth, 3))
    strips = np.array([[0, 0, reach[0], height], [0, 0, width, reach[1]],
                       [width - reach[2], 0, width, height], [0, height - reach[3], width, height]])
    strips = np.clip(strips, 0, [width, height, width, height]).astype(int)
    return strips[scanned]


class FrameMasker:
    """Masks the frames of one video, given in order: ``masked, faces = masker(rgb)``."""

    def __init__(self, detector: MTCNN, config: SequenceConfig = SequenceConfig()):
        self.detector, self.config = detector, config
        self.tracks = Tracks(config.track)
        self.index = 0
        self.seen = np.zeros(4)  # x0 y0 x1 y1: the part of the view the detector has looked at, moved with the camera

    def find(self, frame: np.ndarray) -> Faces:
        """This frame's faces: detected (the whole cascade, or rescoring the tracks' predicted boxes), then tracked."""
        predicted = self.tracks.predict()
        height, width = frame.shape[:2]
        if self.index % self.config.detect_every == 0:
            found = self.detector.detect(frame)
            self.seen = np.array([0.0, 0.0, width, height])
        else:
            found = self.detector.rescore(frame, np.vstack([predicted, self.edges(frame)]))
        self.index += 1
        return self.tracks.update(found.boxes, found.scores)

    def edges(self, frame: np.ndarray) -> np.ndarray:
        """P-Net's proposals on the strips of the frame come into view since they were last looked at."""
        if self.config.edge_depth <= 0 or not self.tracks.config.camera:
            return np.zeros((0, 4))
        height, width = frame.shape[:2]
        motion = self.tracks.motion  # the camera's motion from the last frame to this one
        self.seen = np.concatenate([self.seen[0:2] * motion[0] + motion[1:3], self.seen[2:4] * motion[0] + motion[1:3]])
        strips = edge_strips(self.seen, width, height, self.config.edge_depth, self.config.edge_step)
        proposals = [self.detector.run(frame[y0:y1, x0:x1], until="pnet").boxes + [x0, y0, x0, y0]
                     for x0, y0, x1, y1 in strips]
        scanned = new_edges(self.seen, width, height, self.config.edge_step)[1]
        self.seen = np.where(scanned, [0.0, 0.0, width, height], self.seen)  # each edge scanned is seen to the frame's
        return np.vstack([np.zeros((0, 4)), *proposals])

    def __call__(self, frame: np.ndarray) -> tuple[np.ndarray, Faces]:
        faces = self.find(frame)
        return mask_faces(frame, faces.boxes, self.config.blur), faces
