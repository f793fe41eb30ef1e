"""The GPU path (ONNX Runtime's CUDA provider or PyTorch on CUDA): runs only where a GPU is.

Training needs no test here: test_train's runs use device "auto", so they train on CUDA there.
"""
from __future__ import annotations

import numpy as np
import pytest

from openmtcnn.runtime import choose_engine

try:
    ENGINE = choose_engine("auto", "cuda")
except ValueError:
    ENGINE = None
pytestmark = pytest.mark.skipif(ENGINE is None, reason="no GPU engine here (onnxruntime-gpu or PyTorch with CUDA)")


@pytest.fixture(scope="module")
def gpu_detector():
    from openmtcnn import MTCNN

    return MTCNN(device="cuda")


def assert_close(a, b):
    assert len(a.boxes) == len(b.boxes)
    np.testing.assert_allclose(a.boxes, b.boxes, atol=0.05)
    np.testing.assert_allclose(a.scores, b.scores, atol=1e-4)
    np.testing.assert_allclose(a.landmarks, b.landmarks, atol=0.05)


def test_auto_takes_the_gpu(gpu_detector):
    from openmtcnn import MTCNN

    assert ENGINE[1] == "cuda" and gpu_detector.workers == 1
    assert set(MTCNN().nets.engines.values()) == {ENGINE[0]}


def test_gpu_finds_the_cpus_faces(gpu_detector, detector, astronaut, astronaut_detections):
    assert_close(gpu_detector.detect(astronaut), astronaut_detections)
    images = [astronaut, astronaut[::-1].copy(), np.zeros((50, 80, 3), np.uint8)]
    for got, want in zip(gpu_detector.detect(images), detector.detect(images)):
        assert_close(got, want)
