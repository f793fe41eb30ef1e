"""Which engine a backend/device request runs on (the GPUs' presence simulated), and P-Net in strips."""
from __future__ import annotations

import pytest

import openmtcnn.runtime as runtime
import openmtcnn.runtime.onnx as ort_runtime
from openmtcnn.models import list_models


@pytest.fixture
def machine(monkeypatch):
    """Set what this machine offers: ONNX Runtime's CUDA provider and/or PyTorch on a GPU."""
    def offer(ort_cuda: bool, torch_cuda: bool) -> None:
        monkeypatch.setattr(ort_runtime, "cuda_available", lambda: ort_cuda)
        monkeypatch.setattr(runtime, "torch_gpu", lambda look_first=True: torch_cuda)
    return offer


@pytest.mark.parametrize("ort_cuda, torch_cuda, backend, device, expected", [
    (False, False, "auto", "auto", ("onnx", "cpu")),
    (False, False, "auto", "cpu", ("onnx", "cpu")),
    (True, True, "auto", "auto", ("onnx", "cuda")),       # ONNX Runtime's CUDA provider first
    (False, True, "auto", "auto", ("torch", "cuda")),     # else PyTorch on the GPU
    (False, True, "auto", "cuda", ("torch", "cuda")),
    (False, True, "auto", "cpu", ("onnx", "cpu")),        # "cpu" is never overridden
    (False, True, "onnx", "auto", ("onnx", "cpu")),       # an explicit engine is kept
    (True, False, "torch", "auto", ("torch", "cpu")),
    (False, True, "torch", "cuda", ("torch", "cuda")),
    (True, True, "opencv", "auto", ("opencv", "cpu")),
])
def test_engine_choice(machine, ort_cuda, torch_cuda, backend, device, expected):
    machine(ort_cuda, torch_cuda)
    assert runtime.choose_engine(backend, device) == expected
    assert runtime.runs_concurrently(backend, device) == (expected == ("onnx", "cpu"))


@pytest.mark.parametrize("backend, device, match", [
    ("auto", "cuda", "onnxruntime-gpu"),
    ("onnx", "cuda", "CUDA requested"),
    ("torch", "cuda", "PyTorch built with CUDA"),
    ("opencv", "cuda", "runs on the CPU"),
    ("auto", "gpu", "unknown device"),
    ("tensorrt", "auto", "unknown backend"),
])
def test_unservable_requests_fail_with_a_reason(machine, backend, device, match):
    machine(False, False)
    with pytest.raises(ValueError, match=match):
        runtime.choose_engine(backend, device)


def test_int8_weights_stay_on_onnx_runtime_when_a_torch_gpu_is_there(machine):
    machine(False, True)
    assert runtime.make_nets("published-int8").engines == {"pnet": "onnx", "rnet": "onnx", "onet": "onnx"}
    assert runtime.runs_concurrently(weights="published-int8")


def test_a_cpu_machine_does_not_import_torch_to_look_for_a_gpu(monkeypatch):
    import os
    import sys

    if not sys.platform.startswith("linux") or os.path.exists("/dev/nvidiactl"):
        pytest.skip("needs a Linux machine without an NVIDIA driver")
    monkeypatch.delitem(sys.modules, "torch", raising=False)
    monkeypatch.setattr("importlib.util.find_spec", lambda name, *a: object())  # "installed"
    assert runtime.torch_gpu() is False
    assert "torch" not in sys.modules


@pytest.mark.parametrize("name", list_models("pnet"))
def test_pnet_strips_give_the_same_numbers(name):
    """A P-Net map run in the strips of ``pnet_strips`` and joined equals one call, bit for bit,
    for every P-Net variant, odd sizes (a partial pooling window at the bottom) and strips of
    one row included."""
    import numpy as np
    import onnxruntime as ort
    import torch

    from openmtcnn.weights.onnx import to_onnx_bytes
    from openmtcnn.models import create_model

    torch.manual_seed(4)
    session = ort.InferenceSession(to_onnx_bytes(create_model(name)), providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(1)
    for height, width in ((12, 12), (41, 40), (57, 63), (101, 30), (13, 90)):
        x = rng.uniform(0, 255, (2, 3, height, width)).astype(np.float32)
        whole = session.run(None, {"image": x})
        for cells in (1, 7, 40, 10**6):
            plan = runtime.pnet_strips(height, width, cells)
            assert plan[0][:2] == (0, 0) and plan[-1][2] == height
            parts = [session.run(None, {"image": x[:, :, start:stop]}) for _, start, stop in plan]
            for i, w in enumerate(whole):
                got = np.concatenate([p[i] for p in parts], axis=w.ndim - 2)
                assert got.shape == w.shape
                np.testing.assert_array_equal(got, w)
