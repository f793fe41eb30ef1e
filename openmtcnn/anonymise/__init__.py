"""Anonymisation: faces in images and videos masked (blur, mosaic, solid) and followed across video frames.

``openmtcnn.anonymise(image, detections, mode="blur", shape="ellipse", mask_scale=1.3)`` calls
``anonymise`` below: the package itself is callable, so that the name stays the package and
``import openmtcnn.anonymise.video as V`` still finds the submodule (a function bound to the same
name would hide it). Only the image operations load here (NumPy and OpenCV); the video code needs
PyAV and is imported where it is used: ``from openmtcnn.anonymise.video import edit_video``.
"""
import sys
import types

from openmtcnn.anonymise.mask import BlurConfig, anonymise, mask_faces

__all__ = ["BlurConfig", "anonymise", "mask_faces"]


class CallablePackage(types.ModuleType):
    """This package, callable as ``anonymise``."""

    def __call__(self, image, detections, mode: str = "blur", shape: str = "ellipse", mask_scale: float = 1.3):
        return anonymise(image, detections, mode=mode, shape=shape, mask_scale=mask_scale)

    __call__.__doc__ = anonymise.__doc__


sys.modules[__name__].__class__ = CallablePackage
