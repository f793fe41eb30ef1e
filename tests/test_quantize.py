"""Int8 quantisation: fake-quant levels, QDQ ONNX equal to the fake-quant torch net, PTQ close to float,
a tiny QAT run that reloads and exports, int8 weight sets in the runtime, and the CLI's errors."""
from __future__ import annotations

import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from test_train import ToySamples

from openmtcnn.compress.quantize import (
    QuantLayer,
    calibrate,
    export_qat,
    float_net,
    prepare_qat,
    q_layers,
    qat_hook,
    to_qdq_onnx,
)
from openmtcnn.models import create_model
from openmtcnn.models.nets import Inference

SIZE = {"pnet": 12, "rnet": 24, "onet": 48}


def random_net(name: str, seed: int = 0, **overrides):
    torch.manual_seed(seed)
    return create_model(name, **overrides).eval()


def images(stage: str, n: int = 6, seed: int = 0, integer: bool = True) -> np.ndarray:
    """Synthetic NCHW inputs in 0-255 (P-Net: a larger picture, as one pyramid level)."""
    side = 40 if stage == "pnet" else SIZE[stage]
    x = np.random.default_rng(seed).uniform(0, 255, (n, 3, side, side))
    return (np.round(x) if integer else x).astype(np.float32)


def ort_run(data: bytes, x: np.ndarray) -> list[np.ndarray]:
    return ort.InferenceSession(data, providers=["CPUExecutionProvider"]).run(None, {"image": x})


def torch_run(net, x: np.ndarray) -> list[np.ndarray]:
    with torch.no_grad():
        return [t.numpy() for t in Inference(net.eval())(torch.from_numpy(x))]


@pytest.mark.parametrize("name", ["pnet", "rnet-lite"])
def test_fake_quant_weights_take_at_most_255_levels_per_channel(name):
    net = prepare_qat(random_net(name))
    stage = net.spec.stage
    calibrate(net, [images(stage)])
    layers = q_layers(net)
    assert len(layers) == sum(isinstance(m, (torch.nn.Conv2d, torch.nn.Linear)) for m in random_net(name).modules())
    for layer in layers.values():
        w, _ = layer.quant_weights()
        p = layer.quant_params()
        assert p["w_int"].abs().max() <= 127 and torch.equal(p["w_int"], p["w_int"].round())
        for channel in w.detach().flatten(1):
            assert len(torch.unique(channel)) <= 255
        # the largest weight of a channel is exactly representable: symmetric, no clipping
        amax = layer.folded()[0].detach().flatten(1).abs().amax(1)
        torch.testing.assert_close(w.detach().flatten(1).abs().amax(1), amax, rtol=1e-6, atol=0)


@pytest.mark.parametrize("name", ["pnet", "rnet", "onet", "onet-lite", "pnet-mcu"])
def test_qdq_onnx_runs_in_onnxruntime_and_matches_the_fake_quant_net(name):
    net = prepare_qat(random_net(name, seed=1))
    stage = net.spec.stage
    calibrate(net, [images(stage, seed=s) for s in range(3)])
    data = to_qdq_onnx(net)
    model = onnx.load_from_string(data)
    ops = {n.op_type for n in model.graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops and not {"Sub", "Mul"} & ops  # normalisation folded
    weights = [i for i in model.graph.initializer if i.name.endswith(".w.int")]
    assert len(weights) == len(q_layers(net)) and all(i.data_type == onnx.TensorProto.INT8 for i in weights)
    assert all(n.input[1].endswith(".w.dq") for n in model.graph.node if n.op_type in ("Conv", "Gemm"))
    x = images(stage, seed=7)
    for got, want in zip(ort_run(data, x), torch_run(net, x)):
        assert got.shape == want.shape
        np.testing.assert_allclose(got, want, atol=1e-4)
    # pyramid images are not integers: rounding ties may then differ in a few inputs, outputs stay close
    x = images(stage, seed=8, integer=False)
    for got, want in zip(ort_run(data, x), torch_run(net, x)):
        assert np.mean(np.abs(got - want) < 1e-3) > 0.95


def test_straight_through_gradients_and_ema_ranges():
    from openmtcnn.compress.quantize import ActQuant, fake_quant

    x = torch.tensor([-2.0, -0.3, 0.0, 0.26, 0.9, 3.0], requires_grad=True)
    y = fake_quant(x, torch.tensor(0.1), torch.tensor(10.0), 0, 20)  # range [-1, 1]
    torch.testing.assert_close(y.detach(), torch.tensor([-1.0, -0.3, 0.0, 0.3, 0.9, 1.0]))
    y.sum().backward()
    torch.testing.assert_close(x.grad, torch.tensor([0.0, 1.0, 1.0, 1.0, 1.0, 0.0]))  # zero where clipped
    a = ActQuant(momentum=0.5, freeze_after=2).train()
    a(torch.tensor([0.0, 4.0]))
    a(torch.tensor([0.0, 2.0]))
    a(torch.tensor([-8.0, 100.0]))  # frozen after two batches: ignored
    assert float(a.hi) == 3.0 and float(a.lo) == 0.0 and bool(a.frozen)
    net = prepare_qat(random_net("rnet"))
    calibrate(net, [images("rnet")])
    net.train()
    sum(o.sum() for o in net(torch.from_numpy(images("rnet")))).backward()
    assert all(m.weight.grad is not None and m.weight.grad.abs().sum() > 0 for m in q_layers(net).values())


def test_ptq_of_the_published_nets_stays_close_to_float(astronaut):
    from openmtcnn.detect import boxes as B

    integral = B.integral_image(astronaut)
    level = B.area_resize(integral, 200, 200).transpose(2, 0, 1)[None]
    rng = np.random.default_rng(0)
    for stage in ("pnet", "rnet", "onet"):
        if stage == "pnet":
            batch = level
        else:  # crops around the face and elsewhere in the picture
            xy = rng.uniform(0, 400, (64, 2))
            boxes = np.hstack([xy, xy + rng.uniform(30, 120, (64, 1))])
            batch = B.crop_resize(astronaut, boxes, SIZE[stage], channels_first=True, integral=integral)
        ref = torch_run(float_net("published", stage), batch)
        got = ort_run(to_qdq_onnx(calibrate(prepare_qat(float_net("published", stage)), [batch])), batch)
        diff = np.abs(got[0] - ref[0])  # face probability
        assert diff.mean() < 0.01 and np.percentile(diff, 99) < 0.1, stage
        assert np.mean((got[0] >= 0.6) == (ref[0] >= 0.6)) > 0.99, stage  # the same windows pass a threshold
        assert np.abs(got[1] - ref[1]).mean() < 0.02, stage  # box offsets


def test_tiny_qat_run_reloads_and_exports(tmp_path, astronaut):
    from openmtcnn import MTCNN
    from openmtcnn.train.trainer import TrainConfig, train
    from openmtcnn.weights.trained import load_trained
    from openmtcnn.weights import manifest

    cfg = TrainConfig(stage="rnet", model="rnet", epochs=2, batch_size=32, steps_per_epoch=3, threads=1,
                      lr=1e-4, init="published")
    result = train(ToySamples(n=240, size=24), tmp_path / "rnet", cfg, show_progress=False, prepare=qat_hook(freeze_after=4))
    assert len(result["history"]) == 2 and np.isfinite(result["best_val_loss"])
    net = load_trained(tmp_path / "rnet" / "last.pt", prepare=prepare_qat)
    quantisers = [a for layer in q_layers(net).values() for a in layer.quantisers()]
    assert quantisers and all(bool(a.frozen) and int(a.steps) == 4 for a in quantisers)  # 6 batches, frozen at 4
    assert all(isinstance(m, QuantLayer) for m in q_layers(net).values())
    # the checkpoint's ranges and weights came back: the reloaded net equals the exported ONNX
    x = images("rnet", seed=3)
    for got, want in zip(ort_run(to_qdq_onnx(net), x), torch_run(net, x)):
        np.testing.assert_allclose(got, want, atol=1e-4)
    folder = export_qat(tmp_path / "rnet" / "best.pt", tmp_path / "weights", base="published-int8", command="test")
    info = manifest(folder)
    assert info["int8"] and info["int8_stages"] == ["pnet", "rnet", "onet"] and info["made_by"] == "test"
    assert info["sources"]["rnet"].endswith("best.pt")
    d = MTCNN(weights=str(folder)).detect(astronaut)
    assert d.boxes.shape[1:] == (4,)


def test_cli_qat_fine_tunes_a_stage_and_writes_an_int8_weight_set(tmp_path, capsys):
    from openmtcnn.cli.main import main
    from openmtcnn.weights import manifest

    data = tmp_path / "48"
    ToySamples(n=192, size=48).save(data)
    out = tmp_path / "qat"
    args = ["compress", "qat", "onet", "--data", str(data), "--out", str(out), "--epochs", "1", "--steps", "2",
            "--batch-size", "16", "--teacher", "published"]
    assert main(args) == 0
    info = manifest(out / "weights")
    assert info["int8"] and info["sources"]["onet"] == str(out / "best.pt")
    assert info["made_by"].startswith("openmtcnn compress qat onet --data") and "--teacher published" in info["made_by"]
    assert "frozen after 1 batches" in capsys.readouterr().out
    assert main(["compress", "qat", "rnet", "--data", str(data), "--out", str(out)]) == 2  # 48x48 samples
    assert "rnet takes 24x24" in capsys.readouterr().err


def test_untrained_ranges_are_refused():
    with pytest.raises(ValueError, match="no activation range"):
        to_qdq_onnx(prepare_qat(random_net("rnet")))
    with pytest.raises(ValueError, match="not a quantised net"):
        to_qdq_onnx(random_net("rnet"))


def test_int8_weight_set_runs_on_onnxruntime_only(astronaut, astronaut_face):
    from _helpers import box_iou

    from openmtcnn import MTCNN
    from openmtcnn.runtime import make_nets
    from openmtcnn.weights import manifest

    info = manifest("published-int8")
    assert info["int8"] and "openmtcnn compress quantize" in info["made_by"]
    assert make_nets("published-int8").engines == {"pnet": "onnx", "rnet": "onnx", "onet": "onnx"}
    for backend in ("torch", "opencv"):
        with pytest.raises(ValueError, match="int8"):
            make_nets("published-int8", backend=backend)
    d = MTCNN(weights="published-int8", threads=1).detect(astronaut)
    assert len(d.boxes) and box_iou(d.boxes[0], astronaut_face) > 0.6
    ref = MTCNN(threads=1).detect(astronaut)
    assert abs(float(d.scores[0]) - float(ref.scores[0])) < 0.01


def test_cli_errors_are_clear(tmp_path, capsys):
    from openmtcnn.cli.main import main

    out = str(tmp_path / "o")
    assert main(["compress", "quantize", "--calib", str(tmp_path / "nope"), "--out", out]) == 2
    assert "--calib folder not found" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("no pictures here")
    assert main(["compress", "quantize", "--calib", str(tmp_path / "empty"), "--out", out]) == 2
    assert "no images" in capsys.readouterr().err
    assert main(["compress", "quantize", "--calib", str(tmp_path), "--out", out, "--float", "xnet:body.0"]) == 2
    assert main(["compress", "quantize", "--weights", "no-such-set", "--calib", str(tmp_path), "--out", out]) == 1
    assert "unknown weights" in capsys.readouterr().err
    assert main(["compress", "quantize", "--weights", "published-int8", "--calib", str(tmp_path), "--out", out]) in (1, 2)
    assert main(["compress", "qat", "rnet", "--data", str(tmp_path / "nope"), "--out", out]) == 2
    assert "sample set" in capsys.readouterr().err


def test_cli_quantize_writes_a_complete_weight_set(tmp_path, astronaut_path, astronaut):
    import shutil

    from openmtcnn import MTCNN
    from openmtcnn.cli.main import main
    from openmtcnn.weights import load_state, manifest

    calib = tmp_path / "calib"
    calib.mkdir()
    shutil.copy(astronaut_path, calib / "a.png")
    out = tmp_path / "int8"
    assert main(["compress", "quantize", "--calib", str(calib), "--out", str(out), "--method", "percentile",
                 "--float", "pnet:heads"]) == 0
    info = json.loads((out / "manifest.json").read_text())
    assert info["int8"] and info["quantization"]["method"] == "percentile"
    assert info["made_by"].startswith("openmtcnn compress quantize --weights published --calib")
    assert info["quantization"]["float_layers"] == {"pnet": ["heads"]}
    for stage in ("pnet", "rnet", "onet"):
        assert (out / f"{stage}.onnx").is_file()
        np.testing.assert_array_equal(load_state(out, stage)["body.0.weight"], load_state("published", stage)
                                      ["body.0.weight"])  # the npz keeps the float weights
    heads = [n for n in onnx.load(out / "pnet.onnx").graph.node if n.op_type == "Conv"]
    assert sum(n.input[1].startswith("net.heads") for n in heads) == 2  # kept float
    assert len(MTCNN(weights=str(out)).detect(astronaut).boxes) >= 1
    assert manifest(out)["models"] == manifest("published")["models"]
