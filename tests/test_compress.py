"""Model families, the memory/MAC estimator, trainer hooks (init, overrides, extra loss) and distillation."""
from __future__ import annotations

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from test_train import ToySamples

from openmtcnn.compress.distill import distillation_loss, distillation_terms
from openmtcnn.compress.memory import estimate, trace, weight_bytes
from openmtcnn.models import STAGES, create_model, list_variants, model_spec, register_variant, variant_models
from openmtcnn.train.loss import LANDMARK, NEG, PART, POS
from openmtcnn.train.trainer import TrainConfig, train
from openmtcnn.weights.trained import load_trained


@pytest.mark.parametrize("variant", list_variants())
def test_every_family_names_one_net_per_stage(variant):
    models = variant_models(variant)
    assert sorted(models) == sorted(STAGES)
    assert all(model_spec(m).stage == s for s, m in models.items())


def test_family_errors():
    with pytest.raises(ValueError, match="unknown variant"):
        variant_models("nope")
    with pytest.raises(ValueError, match="not a rnet"):
        register_variant("broken", {"pnet": "pnet", "rnet": "onet", "onet": "onet"})


def test_variant_sizes_are_ordered():
    """lite and mcu are smaller than published; large-pnet's P-Net is wider."""
    params = {v: sum(weight_bytes(create_model(m))["params"] for m in variant_models(v).values())
              for v in ("published", "lite", "mcu")}
    assert params["mcu"] < params["lite"] < params["published"]
    big, small = create_model("pnet-large"), create_model("pnet")
    assert weight_bytes(big)["params"] > 2 * weight_bytes(small)["params"]


def test_macs_counted_by_hand():
    """Published P-Net on 12x12: 27,000 + 12,960 + 4,608 + heads 192 MACs; R-Net on one crop 1,530,768."""
    assert sum(l.macs for l in trace(create_model("pnet"), 12, 12)) == 44_760
    assert sum(l.macs for l in trace(create_model("rnet"), 24, 24)) == 1_530_768
    dw = trace(create_model("pnet-lite"), 12, 12)
    # separable conv2: depthwise 3x3 over 10 channels (3*3*10*9) + pointwise 10->16 (9*10*16)
    assert [l.macs for l in dw if l.kind == "Conv2d"][1:3] == [810, 1440]


def test_estimate_adds_up():
    e = estimate("mcu", 160, 120, candidates={"rnet": 10, "onet": 2})
    nets = e["nets"]
    assert e["params"] == sum(n["params"] for n in nets.values())
    assert nets["rnet"]["macs_per_frame"] == 10 * nets["rnet"]["macs_per_call"]
    assert nets["onet"]["calls"] == 2
    assert e["ram_buffers_int8"]["frame"] == 160 * 120 * 3
    assert e["peak_ram_int8"] == sum(e["ram_buffers_int8"].values())
    assert nets["pnet"]["int8_bytes"] < nets["pnet"]["float32_bytes"] / 2
    # P-Net runs on every pyramid level: more MACs than on the largest level alone
    assert nets["pnet"]["macs_per_frame"] > nets["pnet"]["macs_per_call"]


def test_cli_memory(tmp_path, capsys):
    from openmtcnn.cli.main import main

    out = tmp_path / "m.json"
    assert main(["compress", "memory", "mcu", "--size", "160x120", "--json", str(out)]) == 0
    assert "pnet-mcu" in capsys.readouterr().out
    assert json.loads(out.read_text())["input"] == [160, 120]
    assert main(["compress", "memory", "mcu", "--size", "big"]) == 2
    assert main(["compress", "memory", "no-such-family"]) == 1


# ---- distillation -----------------------------------------------------------------------------

def test_distillation_terms():
    kind = torch.tensor([NEG, POS, PART, LANDMARK])
    logits, box = torch.randn(4, 2), torch.randn(4, 4)
    cls, b = distillation_terms((logits, box), (logits, box), kind)
    assert cls.abs().item() < 1e-6 and b.item() == 0  # a student equal to its teacher pays nothing
    student_box = box.clone().requires_grad_(True)
    student_logits = torch.zeros(4, 2, requires_grad=True)
    cls, b = distillation_terms((student_logits, student_box + 1), (logits, box), kind)
    assert b.item() == pytest.approx(4.0)  # squared error 1 on 4 coordinates, mean over pos and part
    (cls + b).backward()
    assert (student_logits.grad.abs().sum(1) > 0).all()  # every sample kind feeds the class term
    assert (student_box.grad.abs().sum(1)[[0, 3]] == 0).all() and (student_box.grad.abs().sum(1)[[1, 2]] > 0).all()


def test_distilled_training_runs_and_pulls_towards_the_teacher(tmp_path):
    """With a strong distillation term the student's face probabilities end closer to the teacher's."""
    torch.manual_seed(0)
    teacher = create_model("pnet").eval()
    samples = ToySamples(n=240)
    x = torch.from_numpy(samples.images.transpose(0, 3, 1, 2).astype(np.float32))
    extra = distillation_loss(teacher, "pnet", weight=5.0)

    def gap(net) -> float:
        with torch.no_grad():
            return (torch.softmax(net(x)[0].flatten(1), 1) - torch.softmax(teacher(x)[0].flatten(1), 1)).abs().mean().item()

    cfg = TrainConfig(stage="pnet", model="pnet-mcu", epochs=3, batch_size=48, steps_per_epoch=8, seed=1, threads=1)
    torch.manual_seed(cfg.seed)
    before = gap(create_model("pnet-mcu"))
    train(samples, tmp_path / "d", cfg, show_progress=False, extra_loss=extra)
    assert gap(load_trained(tmp_path / "d" / "last.pt")) < before


# ---- trainer hooks ------------------------------------------------------------------------------

def test_init_and_overrides_round_trip(tmp_path, astronaut):
    """A narrower net (overrides) trains, reloads with its widths, and exports to a usable weight set;
    init from the published weight set starts from exactly those weights."""
    from openmtcnn import MTCNN
    from openmtcnn.weights.trained import export_trained
    from openmtcnn.runtime.torch import load_net

    samples = ToySamples(n=96, size=24)
    cfg = TrainConfig(stage="rnet", model="rnet-lmk", model_kwargs={"channels": (8, 12, 16, 32)}, epochs=1,
                      batch_size=32, steps_per_epoch=2, threads=1)
    train(samples, tmp_path / "narrow", cfg, show_progress=False)
    net = load_trained(tmp_path / "narrow" / "best.pt")
    assert net.body[0].out_channels == 8 and net.overrides == {"channels": (8, 12, 16, 32)}
    folder = export_trained({"rnet": tmp_path / "narrow" / "best.pt"}, tmp_path / "ws")
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["model_kwargs"] == {"rnet": {"channels": [8, 12, 16, 32]}}
    assert load_net(folder, "rnet").net.body[0].out_channels == 8  # the torch backend rebuilds the widths
    for backend in ("onnx", "torch"):
        MTCNN(weights=str(folder), backend=backend).detect(astronaut)  # runs end to end

    seen = []
    cfg = TrainConfig(stage="onet", init="published", epochs=1, batch_size=32, steps_per_epoch=1, lr=0.0,
                      weight_decay=0.0, threads=1)
    train(ToySamples(n=64, size=48), tmp_path / "init", cfg, show_progress=False,
          prepare=lambda n: seen.append(n) or n)
    assert len(seen) == 1
    got = load_trained(tmp_path / "init" / "last.pt").state_dict()
    want = load_net("published", "onet").net.state_dict()
    assert all(torch.equal(got[k], want[k]) for k in want)  # lr 0: still the published weights


def test_cli_trains_a_family_member(tmp_path, capsys):
    """``train STAGE --variant NAME`` trains that family's net; a --model of another stage is refused."""
    from openmtcnn.cli.main import main

    data = tmp_path / "12"
    ToySamples(n=96, size=12).save(data)
    args = ["train", "pnet", "--data", str(data), "--epochs", "1", "--steps", "2", "--batch-size", "32", "--threads", "1"]
    assert main(args + ["--out", str(tmp_path / "m"), "--variant", "mcu"]) == 0
    assert torch.load(tmp_path / "m" / "best.pt", weights_only=True)["config"]["model"] == "pnet-mcu"
    assert main(args + ["--out", str(tmp_path / "x"), "--model", "rnet-mcu"]) == 2
    assert "not a pnet net" in capsys.readouterr().err
    assert main(args + ["--out", str(tmp_path / "y"), "--variant", "nope"]) == 1
