"""Loss and trainer on synthetic samples: each loss sees its own samples, OHEM keeps 70%,
training lowers the loss, resuming continues exactly where the run stopped."""
from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
import torch

from openmtcnn.train.loss import LANDMARK, NEG, PART, POS, mtcnn_loss, ohem_cross_entropy
from openmtcnn.train.trainer import (TrainConfig, blur_sides, epoch_batches, resample, split_indices, to_tensors,
                                     train)
from openmtcnn.weights.trained import load_trained


class ToySamples:
    """In-memory samples with the SampleSet interface: a bright disc is a face, noise is not."""

    def __init__(self, n: int = 480, size: int = 12, seed: int = 0):
        rng = np.random.default_rng(seed)
        self.kind = np.resize(np.array([NEG, NEG, NEG, POS, PART, LANDMARK], np.int8), n)
        images = rng.integers(0, 90, (n, size, size, 3)).astype(np.uint8)
        yy, xx = np.mgrid[:size, :size]
        disc = (yy - size / 2 + 0.5) ** 2 + (xx - size / 2 + 0.5) ** 2 < (size / 3) ** 2
        faces = self.kind != NEG
        images[faces] = np.where(disc[None, :, :, None], 230, images[faces]).astype(np.uint8)
        self.images = images
        self.box = np.where((self.kind == POS) | (self.kind == PART), 0.0, np.nan)[:, None] * np.ones(4)
        self.box[self.kind == PART] = 0.2
        self.landmarks = np.full((n, 5, 2), np.nan)
        self.landmarks[self.kind == LANDMARK] = [[0.3, 0.35], [0.7, 0.35], [0.5, 0.5], [0.35, 0.7], [0.65, 0.7]]

    def __len__(self) -> int:
        return len(self.kind)

    def indices_by_kind(self) -> dict[int, np.ndarray]:
        return {k: np.nonzero(self.kind == k)[0] for k in (NEG, POS, PART, LANDMARK)}

    def __getitem__(self, idx):
        return (self.images[idx], self.kind[idx], self.box[idx].astype(np.float32),
                self.landmarks[idx].astype(np.float32))

    def save(self, folder):
        """The same samples as a one-shard sample set on disk (what ``openmtcnn data`` writes)."""
        from openmtcnn.data.crops import Samples
        from openmtcnn.data.store import SampleSet, record_shard, write_manifest, write_shard

        folder.mkdir(parents=True)
        manifest = {"format": 1, "settings": {"size": self.images.shape[1]}, "total_shards": 1, "complete": False,
                    "shards": []}
        write_shard(folder, 0, Samples(*self[np.arange(len(self))]))
        record_shard(folder, manifest, 0, self.kind, images=1)
        write_manifest(folder, manifest)
        return SampleSet(folder)


def outputs(n: int, landmarks: bool = True, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    out = (torch.randn(n, 2, generator=g, requires_grad=True), torch.randn(n, 4, generator=g, requires_grad=True))
    return out + ((torch.randn(n, 10, generator=g, requires_grad=True),) if landmarks else ())


def test_each_loss_sees_only_its_sample_types():
    kind = torch.tensor([NEG, POS, PART, LANDMARK])
    box = torch.tensor([[np.nan] * 4, [0.1] * 4, [0.2] * 4, [np.nan] * 4], dtype=torch.float32)
    lmk = torch.full((4, 5, 2), float("nan"))
    lmk[3] = 0.5
    out = outputs(4)
    loss = mtcnn_loss(out, kind, box, lmk, ohem_keep=1.0)
    loss.total.backward()
    cls_grad, box_grad, lmk_grad = (o.grad.abs().sum(dim=1) for o in out)
    assert (cls_grad[[0, 1]] > 0).all() and (cls_grad[[2, 3]] == 0).all()  # neg + pos
    assert (box_grad[[1, 2]] > 0).all() and (box_grad[[0, 3]] == 0).all()  # pos + part
    assert (lmk_grad[3] > 0) and (lmk_grad[:3] == 0).all()  # landmark samples only
    # the values: box loss is the mean squared Euclidean error of pos and part
    expected_box = ((out[1][1:3] - box[1:3]) ** 2).sum(dim=1).mean()
    assert loss.box.item() == pytest.approx(expected_box.item(), rel=1e-6)


def test_missing_sample_types_give_zero_losses_not_nan():
    kind = torch.tensor([NEG, NEG])
    loss = mtcnn_loss(outputs(2, landmarks=False), kind, torch.full((2, 4), float("nan")),
                      torch.full((2, 5, 2), float("nan")))
    assert loss.box.item() == 0 and loss.landmarks.item() == 0 and torch.isfinite(loss.total)


def test_ohem_keeps_the_hardest_70_percent():
    logits = torch.zeros(10, 2, requires_grad=True)
    labels = torch.tensor([1, 0] * 5)
    with torch.no_grad():
        logits[:, 1] = torch.linspace(-4, 4, 10)  # losses differ per sample
    ohem_cross_entropy(logits, labels, keep=0.7).backward()
    used = (logits.grad.abs().sum(dim=1) > 0).sum().item()
    assert used == 7
    per = torch.nn.functional.cross_entropy(logits.detach(), labels, reduction="none")
    hardest = set(torch.topk(per, 7).indices.tolist())
    assert set(torch.nonzero(logits.grad.abs().sum(dim=1) > 0).flatten().tolist()) == hardest


def test_batches_mix_kinds_by_ratio_and_are_deterministic():
    samples = ToySamples()
    train_idx, val_idx = split_indices(samples.indices_by_kind(), 0.1, seed=0)
    assert all(len(set(train_idx[k]) & set(val_idx[k])) == 0 for k in train_idx)
    cfg = TrainConfig(stage="pnet", batch_size=70, mix=(3, 1, 1, 2))
    a, b = epoch_batches(train_idx, cfg, epoch=0), epoch_batches(train_idx, cfg, epoch=0)
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    assert not np.array_equal(a[0], epoch_batches(train_idx, cfg, epoch=1)[0])
    counts = np.bincount(samples.kind[a[0]], minlength=4)
    assert counts.tolist() == [30, 10, 10, 20]


def test_bad_configs_are_value_errors():
    with pytest.raises(ValueError):
        TrainConfig(stage="xnet")
    with pytest.raises(ValueError):
        TrainConfig(stage="pnet", model="onet")
    with pytest.raises(ValueError):
        TrainConfig(stage="pnet", mix=(1, 1))
    with pytest.raises(ValueError):
        TrainConfig(stage="pnet", jitter=1.5)
    with pytest.raises(ValueError, match="blur"):
        TrainConfig(stage="rnet", blur=-0.1)
    with pytest.raises(ValueError, match="names no parameter"):
        TrainConfig(stage="onet", train_only=("heads.landmark",))
    with pytest.raises(ValueError, match="task_weights"):
        TrainConfig(stage="onet", task_weights=(1.0, 0.5))
    with pytest.raises(ValueError, match="task_weights"):
        TrainConfig(stage="onet", task_weights=(1.0, -0.5, 1.0))
    with pytest.raises(ValueError, match="precision"):
        TrainConfig(stage="onet", precision="fp16")


def test_task_weights_default_to_the_papers_and_weigh_the_trained_loss(tmp_path):
    assert TrainConfig(stage="pnet").task_weights == (1.0, 0.5, 0.5)
    assert TrainConfig(stage="onet").task_weights == (1.0, 0.5, 1.0)
    runs = {}
    for name, weights in {"paper": None, "landmarks x4": (1.0, 0.5, 2.0)}.items():
        cfg = TrainConfig(stage="pnet", epochs=1, batch_size=64, steps_per_epoch=1, threads=1, task_weights=weights)
        runs[name] = train(ToySamples(), tmp_path / name, cfg, show_progress=False)["history"][0]
    a, b = runs["paper"], runs["landmarks x4"]  # one identical first step: only the weighting differs
    assert a["train_landmark_loss"] == pytest.approx(b["train_landmark_loss"]) and a["train_landmark_loss"] > 0
    extra = b["train_loss"] - a["train_loss"]
    assert extra == pytest.approx(1.5 * a["train_landmark_loss"], rel=1e-4)


def test_flip_mirrors_faces_and_offsets_and_shade_changes_only_pixels():
    samples = ToySamples(n=6)
    idx = np.arange(6)
    images, kind, box, _ = samples[idx]
    images = images.copy()
    images[:, :, :6] = 0  # left half dark: mirroring is visible
    batch = (images, kind, box, samples[idx][3])
    flip = np.ones(6, bool)
    x, k, b, _ = to_tensors(batch, torch.device("cpu"), flip)
    face = kind != LANDMARK  # landmark samples keep their own augmentation
    assert torch.equal(x[face], torch.from_numpy(images[face][:, :, ::-1].transpose(0, 3, 1, 2).copy()).float())
    assert torch.equal(x[~face], torch.from_numpy(images[~face].transpose(0, 3, 1, 2).copy()).float())
    part = np.nonzero(kind == PART)[0][0]
    assert b[part].tolist() == pytest.approx([-0.2, 0.2, -0.2, 0.2])  # x offsets swap sides and sign
    same = to_tensors(batch, torch.device("cpu"), shade=np.tile([1.0, 0.0], (6, 1)))[0]
    assert torch.equal(same, torch.from_numpy(images.transpose(0, 3, 1, 2).copy()).float())
    shade = np.array([[1.0, 300.0], [0.0, 0.0], [2.0, 0.0], [1.0, -10.0], [1.0, 0.0], [1.0, 0.0]])
    y, k2, b2, _ = to_tensors(batch, torch.device("cpu"), shade=shade)
    assert (y[0] == 255).all() and (y[1] == 127.5).all() and y.min() >= 0 and y.max() <= 255
    assert torch.equal(y[3], (same[3] - 10).clamp(0, 255)) and torch.equal(y[4], same[4])
    assert torch.equal(k2, k) and torch.equal(b2.nan_to_num(), torch.from_numpy(box).nan_to_num())


def test_blur_resamples_only_the_samples_drawn_and_keeps_their_labels():
    sides = blur_sides(np.random.default_rng(5), 2000, 24, 0.3)
    assert np.array_equal(sides, blur_sides(np.random.default_rng(5), 2000, 24, 0.3))  # the same draw for a seed
    low = sides < 24
    assert 0.25 < low.mean() < 0.35 and sides[low].min() >= 10 and sides[low].max() <= 23
    assert blur_sides(np.random.default_rng(5), 8, 24, 0.0) is None
    x = torch.zeros(3, 3, 24, 24)
    x[:, :, ::2] = 255.0  # one-pixel stripes: what shrinking to a small face's size wipes out
    y = resample(x, np.array([24, 12, 11]))
    assert torch.equal(y[0], x[0])
    assert (y[1] - 127.5).abs().max() < 1 and (y[2] - 127.5).abs().max() < 60  # blurred to grey, or nearly
    samples = ToySamples(n=6, size=24)
    batch = samples[np.arange(6)]
    x0, k0, b0, l0 = to_tensors(batch, torch.device("cpu"))
    x1, k1, b1, l1 = to_tensors(batch, torch.device("cpu"), sides=np.array([24, 10, 24, 16, 24, 24]))
    assert torch.equal(x1[[0, 2, 4, 5]], x0[[0, 2, 4, 5]]) and not torch.equal(x1[1], x0[1])
    assert torch.equal(k1, k0) and torch.equal(b1.nan_to_num(), b0.nan_to_num())


def test_tiny_training_lowers_the_loss(tmp_path):
    samples = ToySamples()
    cfg = TrainConfig(stage="pnet", epochs=6, batch_size=64, lr=3e-3, steps_per_epoch=12, seed=1, threads=1)
    result = train(samples, tmp_path, cfg, show_progress=False)
    h = result["history"]
    assert h[-1]["val_cls_loss"] < 0.5 * h[0]["val_cls_loss"] or h[-1]["val_cls_loss"] < 0.1
    assert h[-1]["train_loss"] < h[0]["train_loss"]
    assert h[-1]["val_cls_accuracy"] > 0.9
    assert (tmp_path / "best.pt").is_file() and json.loads((tmp_path / "history.json").read_text()) == h
    net = load_trained(tmp_path / "best.pt")
    assert net.heads.landmarks is not None  # P-Net trained with the paper's landmark head


def test_bf16_training_learns_like_fp32_and_is_recorded(tmp_path):
    """bfloat16 autocast only for the forward pass: the same first-step loss to bf16's precision, and it learns."""
    runs = {}
    for precision in ("fp32", "bf16"):
        cfg = TrainConfig(stage="rnet", epochs=4, batch_size=64, lr=3e-3, steps_per_epoch=8, seed=1, threads=1,
                          precision=precision)
        runs[precision] = train(ToySamples(size=24), tmp_path / precision, cfg, show_progress=False)["history"]
    fp32, bf16 = runs["fp32"], runs["bf16"]
    assert bf16[0]["train_loss"] == pytest.approx(fp32[0]["train_loss"], rel=0.05)
    assert bf16[-1]["val_cls_accuracy"] > 0.9 and bf16[-1]["val_cls_loss"] < 0.5 * bf16[0]["val_cls_loss"]
    checkpoint = torch.load(tmp_path / "bf16" / "best.pt", weights_only=True)
    assert checkpoint["config"]["precision"] == "bf16"
    assert all(v.dtype == torch.float32 for v in checkpoint["model"].values() if v.is_floating_point())


def test_train_only_changes_just_the_named_parameters(tmp_path):
    """Fine-tuning the landmark head from a checkpoint leaves every other weight, so face scores and boxes, as they were."""
    train(ToySamples(), tmp_path / "base", TrainConfig(stage="pnet", epochs=1, batch_size=64, steps_per_epoch=4,
                                                         threads=1), show_progress=False)
    cfg = TrainConfig(stage="pnet", epochs=2, batch_size=64, lr=3e-3, steps_per_epoch=6, threads=1, mix=(0, 0, 0, 1),
                      init=str(tmp_path / "base" / "best.pt"), train_only=("heads.landmarks",))
    h = train(ToySamples(), tmp_path / "head", cfg, show_progress=False)["history"]
    before, after = load_trained(tmp_path / "base" / "best.pt"), load_trained(tmp_path / "head" / "last.pt")
    changed = [n for n, p in before.state_dict().items() if not torch.equal(p, after.state_dict()[n])]
    assert changed == ["heads.landmarks.weight", "heads.landmarks.bias"]
    assert h[-1]["val_landmark_loss"] < h[0]["val_landmark_loss"]
    ckpt = torch.load(tmp_path / "head" / "last.pt", weights_only=True)
    assert ckpt["config"]["train_only"] == ["heads.landmarks"]


class KilledAfter(ToySamples):
    """Samples whose reads fail after a number of batches: a run killed mid-epoch."""

    def __init__(self, calls: int, **kw):
        super().__init__(**kw)
        self.calls = calls

    def __getitem__(self, idx):
        self.calls -= 1
        if self.calls < 0:
            raise KeyboardInterrupt("killed")
        return super().__getitem__(idx)


@pytest.mark.parametrize("stage, size, model_kwargs", [("rnet", 24, {}), ("onet", 48, {"dropout": 0.25})])
def test_resume_continues_where_it_stopped(tmp_path, stage, size, model_kwargs):
    kw = dict(stage=stage, epochs=3, batch_size=48, steps_per_epoch=3, seed=3, threads=1, jitter=0.2, blur=0.3,
              model_kwargs=model_kwargs)
    train(ToySamples(n=480, size=size, seed=2), tmp_path / "a", TrainConfig(**kw), show_progress=False)
    with pytest.raises(KeyboardInterrupt):  # 3 train + 1 validation reads per epoch: dies inside epoch 3
        train(KilledAfter(9, n=480, size=size, seed=2), tmp_path / "b", TrainConfig(**kw), show_progress=False)
    assert [e["epoch"] for e in json.loads((tmp_path / "b" / "history.json").read_text())] == [1, 2]
    resumed = train(ToySamples(n=480, size=size, seed=2), tmp_path / "b", TrainConfig(**kw), show_progress=False)
    assert [e["epoch"] for e in resumed["history"]] == [1, 2, 3]
    a, b = load_trained(tmp_path / "a" / "last.pt"), load_trained(tmp_path / "b" / "last.pt")
    for (name, p), q in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.equal(p, q), name


def test_a_resumed_run_says_so_once(tmp_path, capsys):
    cfg = TrainConfig(stage="pnet", epochs=1, batch_size=32, steps_per_epoch=2, threads=1)
    train(ToySamples(), tmp_path, cfg)
    assert "resuming" not in capsys.readouterr().err
    train(ToySamples(), tmp_path, replace(cfg, epochs=2))
    err = capsys.readouterr().err
    assert err.count("resuming") == 1 and f"resuming from {tmp_path / 'last.pt'} after epoch 1 of 2" in err


def test_trained_checkpoint_exports_to_a_working_weight_set(tmp_path, astronaut):
    from openmtcnn import MTCNN
    from openmtcnn.weights.trained import export_trained
    from openmtcnn.runtime import make_nets
    from openmtcnn.weights import manifest

    cfg = TrainConfig(stage="pnet", epochs=1, batch_size=32, steps_per_epoch=2, threads=1)
    train(ToySamples(), tmp_path / "pnet", cfg, show_progress=False)
    folder = export_trained({"pnet": tmp_path / "pnet" / "best.pt"}, tmp_path / "toy")
    m = manifest(folder)
    assert m["models"] == {"pnet": "pnet-lmk", "rnet": "rnet", "onet": "onet"}
    # the exported P-Net (with its landmark head) equals its checkpoint, in ONNX and torch alike
    x = np.random.default_rng(0).uniform(0, 255, (2, 3, 30, 40)).astype(np.float32)
    ref = torch.softmax(load_trained(tmp_path / "pnet" / "best.pt")(torch.from_numpy(x))[0], 1)[:, 1].detach().numpy()
    for backend in ("onnx", "opencv", "torch"):
        np.testing.assert_allclose(make_nets(str(folder), backend=backend)("pnet", x)[0], ref, atol=1e-4)
    d = MTCNN(weights=str(folder)).detect(astronaut)  # the whole cascade runs on the new set
    assert d.boxes.shape[1] == 4
    with pytest.raises(ValueError, match="unknown stages"):
        export_trained({"qnet": "x"}, tmp_path / "bad")


DDP_SCRIPT = """
import sys
import numpy as np
sys.path.insert(0, {tests!r})
from test_train import ToySamples
from openmtcnn.train.trainer import TrainConfig, train
cfg = TrainConfig(stage="pnet", epochs=2, batch_size=32, steps_per_epoch=3, threads=1, device="cpu")
train(ToySamples(), {out!r}, cfg, show_progress=False)
"""


def test_torchrun_with_two_processes(tmp_path):
    """DistributedDataParallel through torchrun (gloo on the CPU): rank 0 writes the checkpoints."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    script = tmp_path / "ddp.py"
    script.write_text(DDP_SCRIPT.format(tests=str(Path(__file__).parent), out=str(tmp_path / "ddp")))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port",
                           "29533", str(script)], capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    history = json.loads((tmp_path / "ddp" / "history.json").read_text())
    assert [e["epoch"] for e in history] == [1, 2]
    assert load_trained(tmp_path / "ddp" / "best.pt").heads.landmarks is not None


def test_sample_sets_join_and_train_together(tmp_path, capsys):
    """Several folders of one crop size read as one set (mined + random crops); sizes must match."""
    from openmtcnn.cli.main import main
    from openmtcnn.data.store import SampleSet

    a, b = ToySamples(n=60, size=24, seed=1), ToySamples(n=42, size=24, seed=2)
    a.save(tmp_path / "a"), b.save(tmp_path / "b")
    joined = SampleSet(tmp_path / "a", tmp_path / "b")
    assert len(joined) == 102 and joined.size == 24 and joined.complete
    assert joined.counts() == {k: v + SampleSet(tmp_path / "b").counts()[k]
                               for k, v in SampleSet(tmp_path / "a").counts().items()}
    idx = np.array([101, 0, 59, 60, 7])
    got = joined[idx]
    for n, (src, i) in enumerate([(b, 41), (a, 0), (a, 59), (b, 0), (a, 7)]):
        np.testing.assert_array_equal(got.images[n], src.images[i])
        assert got.kind[n] == src.kind[i]
    ToySamples(n=30, size=12).save(tmp_path / "c")
    with pytest.raises(ValueError, match="crop sizes"):
        SampleSet(tmp_path / "a", tmp_path / "c")
    out = tmp_path / "run"
    assert main(["train", "rnet", "--data", str(tmp_path / "a"), str(tmp_path / "b"), "--out", str(out),
                 "--epochs", "1", "--steps", "2", "--batch-size", "16", "--threads", "1"]) == 0
    assert (out / "best.pt").is_file()
    assert main(["train", "rnet", "--data", str(tmp_path / "a"), str(tmp_path / "none"), "--out", str(out)]) == 2
    assert "sample set folders" in capsys.readouterr().err
