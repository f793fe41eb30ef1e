"""The detection cascade, its stages, and the box operations it is made of."""
from openmtcnn.detect.alignment import align
from openmtcnn.detect.cascade import KEYPOINTS, MTCNN, STAGES, Candidates, Detections, Observer, pyramid_scales
from openmtcnn.detect.image import to_rgb

__all__ = ["KEYPOINTS", "MTCNN", "STAGES", "Candidates", "Detections", "Observer", "align", "pyramid_scales",
           "to_rgb"]
