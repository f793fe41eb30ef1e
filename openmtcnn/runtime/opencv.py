"""A net on OpenCV's DNN module: ``backend="opencv"``, for machines without ONNX Runtime's speed."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from openmtcnn.geometry import INPUT_SIZES
from openmtcnn.weights import WeightsError


def last_line(e: Exception) -> str:
    """The last line of an error's message: OpenCV's failed check, without its source location."""
    lines = str(e).strip().splitlines()
    return lines[-1].strip() if lines else type(e).__name__


class CvNet:
    """``net(batch)`` -> tuple of NumPy outputs (prob, box[, landmarks]), as ``OrtNet``.

    With ``stage``, one zero input of the stage's size is run to check the model is that stage's.
    """

    def __init__(self, path: str | Path, stage: str | None = None):
        if not Path(path).is_file():
            raise WeightsError(f"{path}: missing; restore the weight set (reinstall openmtcnn, or export it again)")
        try:
            self.net = cv2.dnn.readNetFromONNX(str(path))
        except cv2.error as e:
            raise WeightsError(f"{path}: OpenCV cannot load it ({last_line(e)}); if the file is damaged or not an "
                               "ONNX model, restore it (reinstall openmtcnn, or export the weight set again)") from None
        self.names = list(self.net.getUnconnectedOutLayersNames())
        if stage is not None:
            self.check(path, stage)

    def check(self, path: str | Path, stage: str) -> None:
        """Refuse another stage's model (WeightsError): it fails on this stage's input, or gives maps where
        R-Net and O-Net give one answer per crop."""
        size = INPUT_SIZES[stage]
        try:
            outs = self(np.zeros((1, 3, size, size), np.float32))
            ok = (outs[0].ndim == 3) == (stage == "pnet") and len(outs) >= (3 if stage == "onet" else 2)
        except cv2.error:
            ok = False
        if not ok:
            raise WeightsError(f"{path}: not a {stage} model (a {size}x{size} input fails or gives another stage's "
                               f"outputs); is it another stage's file? Restore {Path(path).name} of the weight set")

    def __call__(self, batch: np.ndarray) -> tuple[np.ndarray, ...]:
        self.net.setInput(np.ascontiguousarray(batch, np.float32))
        outs = self.net.forward(self.names)
        n = batch.shape[0]
        if outs[0].ndim == 4:  # P-Net: prob (N, h', w'), box (N, 4, h', w')
            return (outs[0].reshape(n, *outs[1].shape[2:]), *outs[1:])
        return tuple(outs)
