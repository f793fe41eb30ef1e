"""Training samples for the cascade: WIDER FACE / CNN_FacePoint readers, crops, shards on disk.

NumPy and OpenCV only, and nothing from later stages (detect, train, runtime): the trainer
imports this package, never the other way round.
"""
from openmtcnn.data.crops import (
    KIND_NAMES,
    LANDMARK,
    NEGATIVE,
    PART,
    POSITIVE,
    Samples,
    face_samples,
    label_boxes,
    label_candidates,
)
from openmtcnn.data.generate import SIZES, SampleConfig, generate_hard, generate_pnet, generate_random
from openmtcnn.data.landmarks import flip, landmark_samples, rotate
from openmtcnn.data.sources import FacePoint, WiderImage, facepoint_pictures, read_facepoint, read_wider, wider_frame
from openmtcnn.data.store import SampleSet

__all__ = [
    "KIND_NAMES", "LANDMARK", "NEGATIVE", "PART", "POSITIVE", "SIZES",
    "FacePoint", "SampleConfig", "SampleSet", "Samples", "WiderImage",
    "face_samples", "facepoint_pictures", "flip", "generate_hard", "generate_pnet", "generate_random",
    "label_boxes", "label_candidates", "landmark_samples", "read_facepoint", "read_wider", "rotate", "wider_frame",
]
