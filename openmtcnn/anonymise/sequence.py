"""Masking the frames of a video in order: the full cascade every K frames, R-Net and O-Net on the tracks between."""
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

    def __post_init__(self):
        if not (isinstance(self.detect_every, numbers.Integral) and self.detect_every >= 1):
            raise ValueError(f"detect_every must be an int >= 1, got {self.detect_every!r}")


class FrameMasker:
    """Masks the frames of one video, given in order: ``masked, faces = masker(rgb)``."""

    def __init__(self, detector: MTCNN, config: SequenceConfig = SequenceConfig()):
        self.detector, self.config = detector, config
        self.tracks = Tracks(config.track)
        self.index = 0

    def find(self, frame: np.ndarray) -> Faces:
        """This frame's faces: detected (the whole cascade, or rescoring the tracks' predicted boxes), then tracked."""
        predicted = self.tracks.predict()
        if self.index % self.config.detect_every == 0:
            found = self.detector.detect(frame)
        else:
            found = self.detector.rescore(frame, predicted)
        self.index += 1
        return self.tracks.update(found.boxes, found.scores)

    def __call__(self, frame: np.ndarray) -> tuple[np.ndarray, Faces]:
        faces = self.find(frame)
        return mask_faces(frame, faces.boxes, self.config.blur), faces
