"""openmtcnn: MTCNN face detection and alignment (Zhang et al. 2016).

Detection runs on NumPy, OpenCV and ONNX Runtime; PyTorch is needed only to train.
"""
from openmtcnn import anonymise  # a package callable as anonymise(image, detections, ...); NumPy and OpenCV only
from openmtcnn.detect import KEYPOINTS, MTCNN, STAGES, Candidates, Detections, align
from openmtcnn.weights import available_weights

__version__ = "0.1.0"
__all__ = ["KEYPOINTS", "MTCNN", "STAGES", "Candidates", "Detections", "align", "anonymise", "available_weights",
           "__version__"]
