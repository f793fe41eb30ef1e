"""Every shipped weight set loads and finds the face in the sample picture, on every engine that runs it.

Float sets run on ONNX Runtime, OpenCV DNN, PyTorch and ncnn (converted with pnnx on first use); int8
sets (ONNX QDQ) on ONNX Runtime only, and the other engines must refuse them with a clear error rather
than run something else.
"""
from __future__ import annotations

import pytest
from _helpers import box_iou

from openmtcnn import MTCNN, available_weights
from openmtcnn.weights import manifest

BACKENDS = ("onnx", "opencv", "torch", "ncnn")


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("name", available_weights())
def test_weight_set_finds_the_face(name, backend, astronaut, astronaut_face):
    for module in {"torch": ["torch"], "ncnn": ["ncnn", "pnnx", "torch"]}.get(backend, []):
        pytest.importorskip(module)
    if manifest(name).get("int8") and backend != "onnx":
        with pytest.raises(ValueError, match="int8"):
            MTCNN(weights=name, backend=backend, device="cpu", threads=1)
        return
    d = MTCNN(weights=name, backend=backend, device="cpu", threads=1).detect(astronaut)
    assert len(d.boxes) >= 1, f"{name} on {backend} found no face"
    assert d.scores[0] > 0.9
    assert box_iou(d.boxes[0], astronaut_face) > 0.7, (name, backend, d.boxes[0])
