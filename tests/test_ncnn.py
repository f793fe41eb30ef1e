"""The ncnn backend and ``openmtcnn export ncnn``: the answers of ONNX Runtime, int8 nets that still find
the face, the per-net bench. Conversions land in the ncnn cache (``$OPENMTCNN_CACHE``), made once."""
from __future__ import annotations

import json
import shutil
import sys

import numpy as np
import pytest
from _helpers import box_iou

pytest.importorskip("ncnn")
pytest.importorskip("pnnx")
pytest.importorskip("torch")

from openmtcnn import MTCNN, available_weights  # noqa: E402
from openmtcnn.cli.main import main  # noqa: E402
from openmtcnn.geometry import STAGES  # noqa: E402
from openmtcnn.models.nets import MEAN, SCALE  # noqa: E402
from openmtcnn.runtime import make_nets  # noqa: E402
from openmtcnn.runtime.ncnn import converted, ncnn_nets  # noqa: E402
from openmtcnn.weights import WeightsError, manifest  # noqa: E402

SHAPES = {"pnet": (2, 3, 37, 53), "rnet": (7, 3, 24, 24), "onet": (5, 3, 48, 48)}


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """``openmtcnn export ncnn`` of the published set: float nets, and int8 ones calibrated on the sample."""
    out = tmp_path_factory.mktemp("ncnn") / "published"
    assert main(["export", "ncnn", "--weights", "published", "--out", str(out), "--quiet"]) == 0
    return out


def assert_same_outputs(a: tuple, b: tuple, atol: float = 1e-4) -> None:
    assert len(a) == len(b)
    for x, y in zip(a, b):
        assert x.shape == y.shape
        np.testing.assert_allclose(x, y, atol=atol)


def test_export_writes_float_and_int8_nets_and_the_command(exported):
    info = json.loads((exported / "manifest.json").read_text())
    assert info["format"] == "ncnn" and info["precision"] == "float"
    assert info["made_by"].startswith("openmtcnn export ncnn --weights published --out ")
    assert info["input"]["blob"] == "in0" and info["outputs"]["onet"] == ["out0", "out1", "out2"]
    assert (info["input"]["mean"], info["input"]["norm"]) == (MEAN, SCALE)  # the nets' own normalisation
    q = json.loads((exported / "int8" / "manifest.json").read_text())
    assert q["precision"] == "int8" and q["made_by"] == info["made_by"] and q["calibration"]["images"] == 1
    for stage in STAGES:
        assert " 8=2" in (exported / "int8" / f"{stage}.param").read_text()  # every layer with weights is int8
        assert (exported / "int8" / f"{stage}.bin").stat().st_size < (exported / f"{stage}.bin").stat().st_size / 2


def test_float_nets_give_onnx_runtimes_answers_on_the_sample(astronaut):
    d = MTCNN(backend="ncnn", threads=1).detect(astronaut)
    ref = MTCNN(backend="onnx", device="cpu", threads=1).detect(astronaut)
    assert len(d.boxes) == len(ref.boxes) >= 1
    np.testing.assert_allclose(d.scores, ref.scores, atol=1e-4)
    np.testing.assert_allclose(d.boxes, ref.boxes, atol=1e-3)  # pixels
    np.testing.assert_allclose(d.landmarks, ref.landmarks, atol=1e-3)


def test_float_nets_answer_as_onnx_runtime_on_wider_photos(widerface_dir):
    """Every input the cascade gives its nets on a few photos (pyramid levels, R-Net and O-Net crops)."""
    from openmtcnn.compress.quantize import calibration_batches

    photos = sorted((widerface_dir / "WIDER_val" / "images").rglob("*.jpg"))[:3]
    ours, ref = ncnn_nets("published", threads=1), make_nets("published", backend="onnx", device="cpu", threads=1)
    for stage, batch in calibration_batches("published", photos, max_crops=(64, 32), show_progress=False):
        assert_same_outputs(ours[stage](batch), ref(stage, batch))


def test_an_exported_folder_runs_on_ncnn_as_its_weights(exported, astronaut):
    d = MTCNN(weights=str(exported), threads=1).detect(astronaut)  # "auto" picks ncnn for an ncnn folder
    ref = MTCNN(backend="ncnn", threads=1).detect(astronaut)
    for a, b in zip(d, ref):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError, match="ncnn files"):
        MTCNN(weights=str(exported), backend="onnx")


def test_int8_nets_still_find_the_face(exported, astronaut, astronaut_face):
    d = MTCNN(weights=str(exported / "int8"), threads=1).detect(astronaut)
    assert len(d.boxes) >= 1 and d.scores[0] > 0.9
    assert box_iou(d.boxes[0], astronaut_face) > 0.7


@pytest.mark.parametrize("name", available_weights())
def test_every_weight_sets_nets_agree_with_onnx_runtime(name):
    if manifest(name).get("int8"):
        with pytest.raises(ValueError, match="int8"):
            MTCNN(weights=name, backend="ncnn")
        return
    ours, ref = ncnn_nets(name, threads=1), make_nets(name, backend="onnx", device="cpu", threads=1)
    rng = np.random.default_rng(0)
    for stage in STAGES:
        x = rng.uniform(0, 255, SHAPES[stage]).astype(np.float32)
        assert_same_outputs(ours[stage](x), ref(stage, x))


def test_a_pruned_set_converts(tmp_path):
    """Pruned widths (manifest ``model_kwargs``) reach pnnx through the registry; the nets answer as torch's."""
    from openmtcnn.compress.prune import prune
    from openmtcnn.models.registry import overrides_json
    from openmtcnn.runtime.torch import load_net, torch_nets
    from openmtcnn.weights import save_weight_set

    nets = {s: prune(load_net("published", s).net, 0.25) for s in STAGES}
    info = {"name": "pruned", "models": {s: n.spec.name for s, n in nets.items()},
            "model_kwargs": {s: overrides_json(n.overrides) for s, n in nets.items()}}
    folder = save_weight_set(tmp_path / "pruned", {s: {k: v.numpy() for k, v in n.state_dict().items()}
                                                   for s, n in nets.items()}, {}, info)
    ours, ref = ncnn_nets(str(folder), threads=1), torch_nets(str(folder), device="cpu")
    rng = np.random.default_rng(1)
    for stage in STAGES:
        x = rng.uniform(0, 255, SHAPES[stage]).astype(np.float32)
        assert_same_outputs(ours[stage](x), ref[stage](x))


def test_depthwise_nets_quantise_too(tmp_path, astronaut, astronaut_face):
    """The lite family's depthwise convolutions take ncnn's per-group int8 path."""
    from openmtcnn.export.ncnn import SAMPLE, quantise_folder

    folder = quantise_folder(converted("lite"), tmp_path / "lite-int8", "lite", [SAMPLE], show_progress=False)
    assert " 8=1" in (folder / "rnet.param").read_text()  # ConvolutionDepthWise
    d = MTCNN(weights=str(folder), threads=1).detect(astronaut)
    assert len(d.boxes) >= 1 and box_iou(d.boxes[0], astronaut_face) > 0.7


def test_kl_threshold_is_ncnn2tables():
    """Thresholds that a line-by-line transcription of ncnn2table's KL loops gave for these histograms."""
    from openmtcnn.export.ncnn_int8 import BINS, kl_threshold

    rng = np.random.default_rng(0)
    found = []
    for trial in range(3):
        x = np.abs(rng.standard_normal(100000) * (1 + trial)) ** (1 + trial)
        found.append(kl_threshold(np.bincount(np.minimum((x / x.max() * BINS).astype(int), BINS - 1), minlength=BINS)))
    assert found == [1950, 950, 411]


def test_a_changed_file_is_refused(exported, tmp_path):
    copy = shutil.copytree(exported, tmp_path / "copy", ignore=shutil.ignore_patterns("int8"))
    shutil.copy(copy / "rnet.param", copy / "pnet.param")
    with pytest.raises(WeightsError, match="pnet.param"):
        MTCNN(weights=str(copy))


def test_without_ncnn_the_error_says_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "ncnn", None)
    with pytest.raises(ImportError, match=r"pip install 'openmtcnn\[ncnn\]'"):
        MTCNN(backend="ncnn")


def test_bench_per_net_prints_the_table_and_writes_json(tmp_path, capsys):
    out = tmp_path / "per_net.json"
    assert main(["bench", "--per-net", "--repeats", "1", "--warmup", "0", "--threads", "1", "--json", str(out)]) == 0
    table = capsys.readouterr().out
    assert "| weights | net | backend | threads | min ms | max ms | avg ms |" in table
    rows = json.loads(out.read_text())["per_net"]
    assert {r["backend"] for r in rows} == {"onnx", "ncnn", "ncnn-int8"}
    assert [r["net"] for r in rows[:5]] == ["pnet 384x288", "rnet x1", "rnet x64", "onet x1", "onet x32"]
    assert all(0 < r["min_ms"] <= r["avg_ms"] <= r["max_ms"] for r in rows)
