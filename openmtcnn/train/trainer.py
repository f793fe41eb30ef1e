"""One trainer for P-Net, R-Net and O-Net: mixed batches, validation, best/last checkpoints, resume.

Batches of each epoch are a pure function of (seed, epoch, rank), so a run resumed from
its last checkpoint continues exactly as if it had not stopped. Runs on the CPU, on CUDA
when present, and on several GPUs under ``torchrun`` (DistributedDataParallel).
"""
from __future__ import annotations

import json
import math
import os
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from openmtcnn.fileio import atomic_write, atomic_write_bytes
from openmtcnn.models.nets import exact_on_cuda
from openmtcnn.models.registry import create_model, model_overrides, model_spec, overrides_json
from openmtcnn.progress import progress
from openmtcnn.train.loss import LANDMARK, NEG, PART, POS, TASK_WEIGHTS, mtcnn_loss

KINDS = (NEG, POS, PART, LANDMARK)
STAGE_THRESHOLDS = {"pnet": 0.6, "rnet": 0.7, "onet": 0.7}
DEFAULT_MODELS = {"pnet": "pnet-lmk", "rnet": "rnet-lmk", "onet": "onet"}
PRECISIONS = ("fp32", "bf16")


@dataclass
class TrainConfig:
    stage: str
    model: str | None = None  # registry name; default: the stage's net with a landmark head
    epochs: int = 10
    batch_size: int = 384
    lr: float = 1e-3
    weight_decay: float = 1e-4
    mix: tuple[int, int, int, int] = (3, 1, 1, 2)  # neg : pos : part : landmark per batch
    steps_per_epoch: int | None = None  # default: one pass over the positives
    val_fraction: float = 0.05
    ohem_keep: float = 0.7
    task_weights: tuple[float, float, float] | None = None  # cls, box, landmarks; default: the paper's for the stage
    flip: bool = True  # mirror face/box samples at random (landmark samples were augmented already)
    jitter: float = 0.0  # photometric: contrast x U(1-j, 1+j), brightness + U(-j, j) * 128 per sample (0: off)
    blur: float = 0.0  # fraction of samples shrunk to 40-99% of their side and enlarged back (small faces' blur)
    seed: int = 0
    device: str = "auto"
    threads: int | None = None
    model_kwargs: dict = field(default_factory=dict)  # registry overrides, e.g. pruned channel widths
    init: str | None = None  # start from a weight set (name/folder) or a checkpoint (.pt) instead of random
    train_only: tuple[str, ...] = ()  # parameter name prefixes to train, the rest frozen (e.g. "heads.landmarks")
    precision: str = "fp32"  # "bf16": forward passes in bfloat16 autocast (weights, losses, updates stay fp32)
    extra: dict = field(default_factory=dict)

    def __post_init__(self):
        if self.stage not in TASK_WEIGHTS:
            raise ValueError(f"stage must be one of {list(TASK_WEIGHTS)}, got {self.stage!r}")
        self.model = self.model or DEFAULT_MODELS[self.stage]
        self.task_weights = tuple(self.task_weights or TASK_WEIGHTS[self.stage])
        if len(self.task_weights) != 3 or min(self.task_weights) < 0:
            raise ValueError(f"task_weights must be three non-negative weights (cls, box, landmarks), "
                             f"got {self.task_weights}")
        if model_spec(self.model).stage != self.stage:
            raise ValueError(f"model {self.model!r} is not a {self.stage} variant")
        if not 0 <= self.jitter < 1:
            raise ValueError(f"jitter must be in [0, 1), got {self.jitter}")
        if not 0 <= self.blur <= 1:
            raise ValueError(f"blur must be in [0, 1], got {self.blur}")
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {self.precision!r}")
        if len(self.mix) != 4 or sum(self.mix) <= 0 or min(self.mix) < 0:
            raise ValueError(f"mix must be four non-negative ratios (neg, pos, part, landmark), got {self.mix}")
        if self.train_only:
            net = create_model(self.model, **model_overrides(self.model_kwargs))
            check_train_only([n for n, _ in net.named_parameters()], tuple(self.train_only))


def split_indices(by_kind: dict[int, np.ndarray], fraction: float, seed: int) -> tuple[dict, dict]:
    """Per-kind train/validation index arrays, the same for a seed."""
    rng = np.random.default_rng([seed, 7])
    train, val = {}, {}
    for k in KINDS:
        idx = rng.permutation(np.sort(np.asarray(by_kind.get(k, []), np.int64)))
        n_val = int(round(len(idx) * fraction))
        val[k], train[k] = np.sort(idx[:n_val]), idx[n_val:]
    return train, val


def epoch_batches(train: dict, cfg: TrainConfig, epoch: int, rank: int = 0) -> list[np.ndarray]:
    """This epoch's batches: each mixes the kinds by ``cfg.mix``, drawn without repeats within the epoch."""
    rng = np.random.default_rng([cfg.seed, epoch, rank])
    present = {k: r for k, r in zip(KINDS, cfg.mix) if r > 0 and len(train[k])}
    if not present:
        raise ValueError("no training samples of the kinds asked for in mix")
    total = sum(present.values())
    per = {k: max(1, round(cfg.batch_size * r / total)) for k, r in present.items()}
    steps = cfg.steps_per_epoch or max(1, math.ceil(len(train.get(POS, [])) / per.get(POS, cfg.batch_size)))
    orders = {k: rng.permutation(np.resize(rng.permutation(train[k]), steps * per[k])) for k in present}
    return [np.sort(np.concatenate([orders[k][s * per[k]:(s + 1) * per[k]] for k in present]))
            for s in range(steps)]


def blur_sides(rng: np.random.Generator, n: int, size: int, fraction: float) -> np.ndarray | None:
    """Per sample, the side to resample it through: a ``fraction`` of them 40-99% of ``size``, the rest ``size``."""
    if not fraction:
        return None
    low = rng.integers(math.ceil(0.4 * size), size, n)
    return np.where(rng.random(n) < fraction, low, size)


def resample(x: torch.Tensor, sides: np.ndarray) -> torch.Tensor:
    """Samples shrunk to side x side (area means) and enlarged back (bilinear), as the cascade's
    resampler enlarges a small face to the crop; samples whose side is the crop's stay as they are."""
    size = x.shape[-1]
    out = x.clone()
    for side in np.unique(sides[sides < size]):
        m = torch.from_numpy(np.flatnonzero(sides == side)).to(x.device)
        small = torch.nn.functional.interpolate(x[m], size=(int(side), int(side)), mode="area")
        out[m] = torch.nn.functional.interpolate(small, size=(size, size), mode="bilinear", align_corners=False)
    return out


def to_tensors(batch: tuple[np.ndarray, ...], device: torch.device, flip: np.ndarray | None = None,
               shade: np.ndarray | None = None, sides: np.ndarray | None = None):
    """Samples as float tensors: NCHW images in 0-255, kinds, box and landmark targets.

    ``flip`` (N,) mirrors face/box samples; ``shade`` (N, 2) scales contrast about mid-grey and
    shifts brightness per sample (labels unchanged), clipped to 0-255; ``sides`` (N,) blurs
    samples by ``resample`` (labels unchanged: the targets are in units of the crop).
    """
    images, kind, box, landmarks = (np.array(a) for a in batch)
    if flip is not None and flip.any():
        f = flip & (kind != LANDMARK)
        images[f] = images[f, :, ::-1]
        box[f] = np.stack([-box[f, 2], box[f, 1], -box[f, 0], box[f, 3]], axis=1)  # mirrored offsets
    # NHWC samples viewed as NCHW are channels-last tensors: the layout oneDNN trains fastest (~1.6x on O-Net)
    x = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).to(device).float()
    if sides is not None:  # on the device, like the net
        x = resample(x, sides)
    if shade is not None:
        contrast, shift = torch.from_numpy(shade.astype(np.float32)).to(device).T[:, :, None, None, None]
        x = ((x - 127.5) * contrast + 127.5 + shift).clamp_(0, 255)
    return (x, torch.from_numpy(kind.astype(np.int64)).to(device),
            torch.from_numpy(box.astype(np.float32)).to(device), torch.from_numpy(landmarks.astype(np.float32)).to(device))


@torch.no_grad()
def evaluate(net, samples, val: dict, cfg: TrainConfig, device: torch.device) -> dict:
    """Validation metrics: task losses (plain cross-entropy), accuracy on pos/neg, recall at the stage threshold."""
    net.eval()
    idx = np.sort(np.concatenate([val[k] for k in KINDS]))
    sums, n_cls, correct, n_pos, found, batches = np.zeros(4), 0, 0, 0, 0, 0
    for start in range(0, len(idx), 1024):
        x, kind, box, lmk = to_tensors(samples[idx[start:start + 1024]], device)
        out = net(x)
        loss = mtcnn_loss(out, kind, box, lmk, cfg.task_weights, ohem_keep=1.0)
        sums += [loss.total.item(), loss.cls.item(), loss.box.item(), loss.landmarks.item()]
        batches += 1
        prob = torch.softmax(out[0].flatten(1), 1)[:, 1]
        is_cls = (kind == NEG) | (kind == POS)
        correct += ((prob >= 0.5) == (kind == POS))[is_cls].sum().item()
        n_cls += is_cls.sum().item()
        n_pos += (kind == POS).sum().item()
        found += (prob[kind == POS] >= STAGE_THRESHOLDS[cfg.stage]).sum().item()
    mean = [float(v) / max(batches, 1) for v in sums]
    net.train()
    return {"loss": mean[0], "cls_loss": mean[1], "box_loss": mean[2], "landmark_loss": mean[3],
            "cls_accuracy": correct / max(n_cls, 1), "recall": found / max(n_pos, 1),
            "threshold": STAGE_THRESHOLDS[cfg.stage]}


def config_dict(cfg: TrainConfig) -> dict:
    """The config as plain JSON-able values (tuples as lists), stored in checkpoints."""
    d = asdict(cfg)
    d["mix"] = list(cfg.mix)
    d["train_only"] = list(cfg.train_only)
    d["task_weights"] = list(cfg.task_weights)
    d["model_kwargs"] = overrides_json(cfg.model_kwargs)
    return d


def save_checkpoint(path: Path, state: dict) -> None:
    atomic_write(path, lambda tmp: torch.save(state, tmp))


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def distributed(device: torch.device) -> tuple[int, int, torch.device]:
    """(rank, world size, this process's device), starting the process group when launched by torchrun.

    On CUDA each process of a node takes its own GPU (NCCL); on the CPU the processes talk over gloo.
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1:
        return 0, 1, device
    if device.type == "cuda":
        local, per_node = int(os.environ.get("LOCAL_RANK", "0")), int(os.environ.get("LOCAL_WORLD_SIZE", world))
        if per_node > torch.cuda.device_count():
            raise ValueError(f"{per_node} processes per node but {torch.cuda.device_count()} GPU(s): start at most "
                             "one process per GPU (torchrun --nproc_per_node), or train with device 'cpu'")
        device = torch.device("cuda", local)
    if not torch.distributed.is_initialized():
        torch.distributed.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return torch.distributed.get_rank(), world, device


def build_net(cfg: TrainConfig) -> torch.nn.Module:
    """The registry's net for a config, with its overrides, initialised from ``cfg.init`` when given."""
    net = create_model(cfg.model, **model_overrides(cfg.model_kwargs))
    if cfg.init:
        net.load_state_dict(initial_state(cfg.init, cfg.stage))
    return net


def _named(name: str, prefixes: tuple[str, ...]) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


def check_train_only(names: list[str], prefixes: tuple[str, ...]) -> None:
    """ValueError when a ``train_only`` prefix names no parameter (a typo would freeze the whole net)."""
    for prefix in prefixes:
        if not any(_named(n, (prefix,)) for n in names):
            raise ValueError(f"train_only {prefix!r} names no parameter of the net; it has: {', '.join(names)}")


def trainable(net: torch.nn.Module, prefixes: tuple[str, ...]) -> list[torch.nn.Parameter]:
    """The parameters to optimise: all, or those named by ``prefixes`` (the rest frozen, so unchanged)."""
    if not prefixes:
        return list(net.parameters())
    check_train_only([n for n, _ in net.named_parameters()], prefixes)
    for name, param in net.named_parameters():
        param.requires_grad_(_named(name, prefixes))
    return [param for param in net.parameters() if param.requires_grad]


def initial_state(source: str, stage: str) -> dict[str, torch.Tensor]:
    """A stage's parameters from a checkpoint (.pt, pickle-free) or a weight set (npz)."""
    if str(source).endswith(".pt"):
        return torch.load(source, map_location="cpu", weights_only=True)["model"]
    from openmtcnn import weights as store
    return {k: torch.from_numpy(v) for k, v in store.load_state(source, stage).items()}


Hook = Callable[[torch.nn.Module], torch.nn.Module]
ExtraLoss = Callable[[torch.Tensor, tuple, torch.Tensor], torch.Tensor]


def train(samples, out_dir: str | Path, cfg: TrainConfig, resume: bool = True, show_progress: bool = True,
          prepare: Hook | None = None, extra_loss: ExtraLoss | None = None) -> dict:
    """Train one stage on a sample set; write last.pt, best.pt and history.json to out_dir.

    ``prepare`` rewrites the net before training (e.g. fake quantisation for QAT), after
    ``cfg.init`` is loaded and before a checkpoint is resumed; ``extra_loss(x, outputs, kind)``
    adds a term to every batch's loss (e.g. distillation from a teacher).
    """
    out = Path(out_dir)
    rank, world, device = distributed(pick_device(cfg.device))
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    net = build_net(cfg)
    net = (prepare(net) if prepare else net).to(device, memory_format=torch.channels_last)
    opt = torch.optim.Adam(trainable(net, tuple(cfg.train_only)), lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(cfg.epochs, 1))
    history, start, best = [], 0, math.inf
    last = out / "last.pt"
    if resume and last.is_file():
        ckpt = torch.load(last, map_location=device, weights_only=True)
        if ckpt["config"]["model"] != cfg.model:
            raise ValueError(f"{last} holds a {ckpt['config']['model']} run, not {cfg.model}: use another --out")
        net.load_state_dict(ckpt["model"])
        opt.load_state_dict(ckpt["optimizer"])
        sched.load_state_dict(ckpt["scheduler"])
        history, start, best = ckpt["history"], ckpt["epoch"] + 1, ckpt["best"]
        if show_progress and rank == 0:  # once, before the bars: a resumed run says where it picks up
            print(f"resuming from {last} after epoch {start} of {cfg.epochs}", file=sys.stderr)
    model = torch.nn.parallel.DistributedDataParallel(net) if world > 1 else net
    train_idx, val_idx = split_indices(samples.indices_by_kind(), cfg.val_fraction, cfg.seed)
    with exact_on_cuda(device):  # TF32 off, deterministic cuDNN: a resumed run repeats an unbroken one
        for epoch in range(start, cfg.epochs):
            t0 = time.perf_counter()
            torch.manual_seed(cfg.seed * 1_000_003 + epoch * 1_009 + rank)  # dropout: a resumed epoch draws alike
            batches = epoch_batches(train_idx, cfg, epoch, rank)
            flips = np.random.default_rng([cfg.seed, epoch, rank, 1])
            shades = np.random.default_rng([cfg.seed, epoch, rank, 2])
            blurs = np.random.default_rng([cfg.seed, epoch, rank, 3])
            sums = np.zeros(4)
            desc = f"{cfg.stage} epoch {epoch + 1}/{cfg.epochs}"
            for idx in progress(batches, desc=desc, enable=show_progress and rank == 0):
                flip = flips.random(len(idx)) < 0.5 if cfg.flip else None
                shade = shades.uniform(-cfg.jitter, cfg.jitter, (len(idx), 2)) * [1, 128] + [1, 0] if cfg.jitter else None
                batch = samples[idx]
                sides = blur_sides(blurs, len(idx), batch[0].shape[1], cfg.blur)
                x, kind, box, lmk = to_tensors(batch, device, flip, shade, sides)
                with torch.autocast(device.type, torch.bfloat16, enabled=cfg.precision == "bf16"):
                    outputs = tuple(o.float() for o in model(x))  # losses in fp32 either way
                loss = mtcnn_loss(outputs, kind, box, lmk, cfg.task_weights, cfg.ohem_keep)
                total = loss.total + extra_loss(x, outputs, kind) if extra_loss else loss.total
                opt.zero_grad(set_to_none=True)
                total.backward()
                opt.step()
                sums += [loss.total.item(), loss.cls.item(), loss.box.item(), loss.landmarks.item()]
            sched.step()
            if rank == 0:
                metrics = {"epoch": epoch + 1, "seconds": round(time.perf_counter() - t0, 2),
                           **{f"train_{k}": float(v) / len(batches)
                              for k, v in zip(("loss", "cls_loss", "box_loss", "landmark_loss"), sums)},
                           **{f"val_{k}": v for k, v in evaluate(net, samples, val_idx, cfg, device).items()}}
                history.append(metrics)
                state = {"model": net.state_dict(), "optimizer": opt.state_dict(), "scheduler": sched.state_dict(),
                         "epoch": epoch, "history": history, "best": float(min(best, metrics["val_loss"])),
                         "config": config_dict(cfg)}
                if metrics["val_loss"] < best:
                    best = metrics["val_loss"]
                    save_checkpoint(out / "best.pt", state)
                save_checkpoint(last, state)
                atomic_write_bytes(out / "history.json", (json.dumps(history, indent=1) + "\n").encode())
            if world > 1:
                torch.distributed.barrier()
    return {"history": history, "best_val_loss": best, "out": str(out)}
