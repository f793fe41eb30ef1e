"""A net on OpenCV's DNN module: ``backend="opencv"``, for machines without ONNX Runtime's speed."""
from __future__ import annotations

import cv2
import numpy as np


class CvNet:
    """``net(batch)`` -> tuple of NumPy outputs (prob, box[, landmarks]), as ``OrtNet``."""

    def __init__(self, path: str):
        self.net = cv2.dnn.readNetFromONNX(str(path))
        self.names = list(self.net.getUnconnectedOutLayersNames())

    def __call__(self, batch: np.ndarray) -> tuple[np.ndarray, ...]:
        self.net.setInput(np.ascontiguousarray(batch, np.float32))
        outs = self.net.forward(self.names)
        n = batch.shape[0]
        if outs[0].ndim == 4:  # P-Net: prob (N, h', w'), box (N, 4, h', w')
            return (outs[0].reshape(n, *outs[1].shape[2:]), *outs[1:])
        return tuple(outs)
