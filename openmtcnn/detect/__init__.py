"""The detection cascade and the box operations it is made of."""
from openmtcnn.detect.alignment import align
from openmtcnn.detect.cascade import KEYPOINTS, MTCNN, Detections, pyramid_scales
from openmtcnn.detect.image import to_rgb

__all__ = ["KEYPOINTS", "MTCNN", "Detections", "align", "pyramid_scales", "to_rgb"]
