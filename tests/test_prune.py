"""Channel pruning: ratio 0 is an exact copy, the lowest-L1 channels go, pruned nets run at every stage,
and the iterative prune/fine-tune run writes its table, resumes without redoing steps, and trains from scratch."""
from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
import torch
from test_train import ToySamples
from torch import nn

from openmtcnn.compress.prune import (
    PruneConfig,
    channel_scores,
    keep_indices,
    prune,
    prune_channels,
    prune_iteratively,
    save_net,
    widths,
)
from openmtcnn.data.store import SampleSet
from openmtcnn.models import create_model, list_models, model_spec

PRUNABLE = [n for n in list_models() if not model_spec(n).kwargs.get("separable")]  # channel pruning: dense nets


def inputs(net: nn.Module, n: int = 3, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 3, net.input_size, net.input_size, generator=g) * 255


@pytest.mark.parametrize("name", PRUNABLE)
def test_ratio_zero_gives_identical_outputs(name):
    torch.manual_seed(0)
    net = create_model(name).eval()
    same = prune(net, 0.0).eval()
    assert widths(same) == widths(net) and same.spec.name == name
    with torch.no_grad():
        for a, b in zip(net(inputs(net)), same(inputs(net)), strict=True):
            assert torch.equal(a, b)


def test_lowest_l1_channels_are_removed_and_outputs_kept():
    """Hand-made weights: the smallest filters of each layer are zero (dead), so removing them changes nothing."""
    torch.manual_seed(1)
    net = create_model("rnet-lmk").eval()
    dead = []
    with torch.no_grad():
        for m in (m for m in net.body if isinstance(m, (nn.Conv2d, nn.Linear))):
            c = m.weight.shape[0]
            idx = np.sort(np.random.default_rng(c).choice(c, c // 4, replace=False))
            m.weight[idx] = 0
            m.bias[idx] = 0
            scale = (1 + torch.arange(c, dtype=torch.float32) / c).view(-1, *[1] * (m.weight.dim() - 1))
            m.weight.mul_(scale)  # distinct L1 norms for the live channels
            dead.append(idx)
    scores = channel_scores(net)
    keep = keep_indices(scores, 0.25)
    for k, d, s in zip(keep, dead, scores):
        assert np.intersect1d(k, d).size == 0 and len(k) == len(s) - len(d)
    small = prune(net, 0.25).eval()
    assert widths(small) == (21, 36, 48, 96)
    x = inputs(net)
    with torch.no_grad():
        for a, b in zip(net(x), small(x), strict=True):
            torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)


def test_kept_weights_are_the_original_rows_and_columns():
    torch.manual_seed(2)
    net = create_model("onet").eval()
    keep = [np.array([0, 2]), np.array([1, 3, 5]), np.array([0, 1]), np.array([4, 7]), np.array([9, 10, 11])]
    small = prune_channels(net, keep)
    assert widths(small) == (2, 3, 2, 2, 3)
    torch.testing.assert_close(small.body[0].weight, net.body[0].weight[[0, 2]], rtol=0, atol=0)
    torch.testing.assert_close(small.body[1].weight, net.body[1].weight[[0, 2]], rtol=0, atol=0)  # PReLU slopes
    torch.testing.assert_close(small.body[3].weight, net.body[3].weight[[1, 3, 5]][:, [0, 2]], rtol=0, atol=0)
    # the Linear after Flatten reads channel c as columns 9c..9c+8
    cols = [4 * 9 + i for i in range(9)] + [7 * 9 + i for i in range(9)]
    linear = next(m for m in net.body if isinstance(m, nn.Linear))
    small_linear = next(m for m in small.body if isinstance(m, nn.Linear))
    torch.testing.assert_close(small_linear.weight, linear.weight[[9, 10, 11]][:, cols], rtol=0, atol=0)
    torch.testing.assert_close(small.heads.landmarks.weight, net.heads.landmarks.weight[:, [9, 10, 11]],
                               rtol=0, atol=0)


@pytest.mark.parametrize("name", ["pnet", "rnet", "onet", "pnet-mcu"])
def test_pruned_nets_run_at_the_right_shapes(name):
    net = create_model(name, landmarks=True).eval()
    small = prune(prune(net, 0.5), 0.5).eval()
    assert small.overrides["landmarks"] is True and all(w < v for w, v in zip(widths(small), widths(net)))
    with torch.no_grad():
        if net.input_size == 12:  # fully convolutional: any size, stride 2
            out = small(torch.rand(1, 3, 40, 30) * 255)
            assert [tuple(o.shape) for o in out] == [(1, 2, 15, 10), (1, 4, 15, 10), (1, 10, 15, 10)]
        else:
            out = small(inputs(net, n=4))
            assert [tuple(o.shape) for o in out] == [(4, 2), (4, 4), (4, 10)]


def test_separable_and_foreign_nets_are_refused():
    with pytest.raises(ValueError, match="separable"):
        prune(create_model("rnet-lite"), 0.25)
    with pytest.raises(TypeError):
        prune(nn.Sequential(nn.Conv2d(3, 4, 3)), 0.25)
    with pytest.raises(ValueError, match="ratio"):
        keep_indices([np.ones(4)], 1.0)


def synthetic_set(folder, n: int = 240, size: int = 24, seed: int = 0) -> SampleSet:
    """A tiny sample set on disk: a bright disc is a face, noise is not."""
    return ToySamples(n=n, size=size, seed=seed).save(folder)


def test_iterative_pruning_writes_the_table_resumes_and_trains_from_scratch(tmp_path):
    samples = synthetic_set(tmp_path / "24")
    torch.manual_seed(0)
    start = create_model("rnet", channels=(8, 8, 8, 16))
    save_net(start, tmp_path / "start.pt", "rnet")
    cfg = PruneConfig(stage="rnet", source=str(tmp_path / "start.pt"), steps=2, ratio=0.25, epochs=1,
                      steps_per_epoch=2, batch_size=32, threads=1)
    kw = {"samples": samples, "out_dir": tmp_path / "run", "show_progress": False, "log": lambda _: None}
    table = prune_iteratively(cfg, **kw)
    names = [r["name"] for r in table["rows"]]
    assert names == ["step0", "step1", "step2"]
    assert [r["widths"] for r in table["rows"]] == [[8, 8, 8, 16], [6, 6, 6, 12], [4, 4, 4, 9]]
    params = [r["params"] for r in table["rows"]]
    macs = [r["macs_per_frame"] for r in table["rows"]]
    assert params[0] > params[1] > params[2] and macs[0] > macs[1] > macs[2]
    assert params[0] == sum(p.numel() for p in start.parameters())
    for r in table["rows"][1:]:
        assert 0 <= r["val"]["cls_accuracy"] <= 1 and "val_pruned" in r and r["train_seconds"] >= 0
    for f in ("table.json", "table.md", "table.png"):
        assert (tmp_path / "run" / f).is_file()
    assert json.loads((tmp_path / "run" / "table.json").read_text())["rows"] == table["rows"]
    assert "| step2 (pruned + fine-tuned) | 4/4/4/9 |" in (tmp_path / "run" / "table.md").read_text()

    # resume: finished steps are not trained again; a from-scratch row is added for the final widths
    stamps = {n: (tmp_path / "run" / n / "train" / "best.pt").stat().st_mtime_ns for n in ("step1", "step2")}
    again = prune_iteratively(replace(cfg, from_scratch=True), **kw)
    assert {n: (tmp_path / "run" / n / "train" / "best.pt").stat().st_mtime_ns for n in stamps} == stamps
    assert again["rows"][:3] == table["rows"]
    scratch = again["rows"][-1]
    assert scratch["name"] == "scratch_4-4-4-9" and scratch["widths"] == [4, 4, 4, 9]
    assert scratch["epochs"] == 2  # all the fine-tuning epochs together
    ckpt = torch.load(tmp_path / "run" / "scratch_4-4-4-9" / "train" / "best.pt", weights_only=True)
    assert ckpt["config"]["init"] is None and ckpt["config"]["model_kwargs"]["channels"] == [4, 4, 4, 9]

    with pytest.raises(ValueError, match="other settings"):
        prune_iteratively(replace(cfg, ratio=0.5), **kw)


@pytest.mark.parametrize("bad, setting", [({"stage": "xnet"}, "stage"), ({"steps": -1}, "steps"),
                                          ({"epochs": 0}, "epochs"), ({"ratio": 1.0}, "ratio"),
                                          ({"criterion": "l2"}, "criterion"), ({"wider_images": "x"}, "wider_gt")])
def test_prune_config_refuses_bad_settings_by_name(bad, setting):
    with pytest.raises(ValueError, match=setting):
        PruneConfig(**{"stage": "rnet", **bad})


def test_l1_next_also_weighs_the_weights_reading_a_channel():
    net = create_model("pnet").eval()
    with torch.no_grad():
        last = net.body[-2]  # the last convolution, read by the 1x1 heads
        last.weight[0] *= 100  # largest own filter ...
        for head in (net.heads.cls, net.heads.box):
            head.weight[:, 0] = 0  # ... that nothing reads
    assert 0 in keep_indices(channel_scores(net, "l1"), 0.25)[-1]
    assert 0 not in keep_indices(channel_scores(net, "l1-next"), 0.25)[-1]


def test_cli_usage_errors(tmp_path, capsys):
    from openmtcnn.cli.main import main

    assert main(["compress", "prune", "rnet", "--data", str(tmp_path), "--out", str(tmp_path / "o")]) == 2
    assert "sample set" in capsys.readouterr().err
    synthetic_set(tmp_path / "24")
    assert main(["compress", "prune", "rnet", "--data", str(tmp_path / "24"), "--out", str(tmp_path / "o"),
                 "--wider-images", str(tmp_path)]) == 2
    assert "go together" in capsys.readouterr().err
