"""Structured channel pruning of P-Net, R-Net and O-Net, and iterative prune-then-fine-tune runs.

Each body layer (convolution, or the hidden fully connected layer of R-Net and O-Net) keeps
the output channels whose filters have the largest L1 norm; the net is rebuilt through the
registry with the smaller ``channels`` and the surviving weights are copied: the layer's
rows, its PReLU slopes, and the next layer's input columns (after Flatten, the channel's
3x3 block of the Linear layer's inputs). Depthwise-separable nets (the lite family) are
refused: their depthwise filters would have to be pruned together with the previous layer.

``prune_iteratively`` alternates pruning and short fine-tunes with the trainer, and writes
one row per step (widths, parameters, MACs per VGA frame, validation metrics and, with a
WIDER FACE val folder, the cascade's AP with the pruned stage in place), resumable step by
step. ``from_scratch`` trains the final widths from a random start for comparison.
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch import nn

from openmtcnn import fileio
from openmtcnn.fileio import atomic_write_bytes
from openmtcnn.models.nets import ONet, PNet, RNet
from openmtcnn.models.registry import create_model
from openmtcnn.train.loss import TASK_WEIGHTS
from openmtcnn.train.trainer import TrainConfig, config_dict, pick_device, save_checkpoint, train
from openmtcnn.weights.trained import load_trained

CRITERIA = ("l1", "l1-next")  # own filter's L1; or times the L1 of the weights that read the channel
WEIGHTED = (nn.Conv2d, nn.Linear)
VGA = (640, 480)


def body_layers(net: nn.Module) -> list[nn.Module]:
    """The layers whose output widths are the net's ``channels``, in order."""
    return [m for m in net.body if isinstance(m, WEIGHTED)]


def check_prunable(net: nn.Module) -> None:
    """TypeError for other classes; ValueError for nets not built by the registry or separable ones."""
    if not isinstance(net, (PNet, RNet, ONet)):
        raise TypeError(f"only PNet, RNet and ONet can be pruned, not {type(net).__name__}")
    if getattr(net, "spec", None) is None:
        raise ValueError("prune a net built with openmtcnn.models.create_model (the pruned one is rebuilt by name)")
    if any(isinstance(m, nn.Conv2d) and m.groups > 1 for m in net.modules()):
        raise ValueError(f"{net.spec.name}: depthwise-separable nets are not supported by channel pruning")


def widths(net: nn.Module) -> tuple[int, ...]:
    """The net's channel widths: output channels of each body layer (the class's ``channels``)."""
    return tuple(m.weight.shape[0] for m in body_layers(net))


def consumers(net: nn.Module) -> list[list[nn.Module]]:
    """For each body layer, the layers that read its output (the next body layer, or the heads)."""
    layers = body_layers(net)
    heads = [h for h in (net.heads.cls, net.heads.box, net.heads.landmarks) if h is not None]
    return [[nxt] for nxt in layers[1:]] + [heads]


def input_columns(layer: nn.Module, keep: np.ndarray, width: int) -> np.ndarray:
    """Input columns of ``layer`` that read the kept channels of a ``width``-channel input.

    A Linear layer after Flatten reads each channel as a block of h*w columns (channel-major).
    """
    n_in = layer.weight.shape[1]
    per = n_in // width
    if per * width != n_in:
        raise ValueError(f"{type(layer).__name__} with {n_in} inputs cannot read {width} channels")
    return (np.asarray(keep, np.int64)[:, None] * per + np.arange(per)).ravel()


def outgoing_l1(layer: nn.Module, width: int) -> np.ndarray:
    """L1 norm of the weights of ``layer`` that read each of ``width`` input channels."""
    w = layer.weight.detach().abs()
    per_column = w.sum(0).flatten() if w.dim() == 2 else w.sum((0, 2, 3))
    return per_column.reshape(width, -1).sum(1).double().numpy()


def channel_scores(net: nn.Module, criterion: str = "l1") -> list[np.ndarray]:
    """Importance of every output channel of every body layer (higher is kept)."""
    if criterion not in CRITERIA:
        raise ValueError(f"criterion must be one of {CRITERIA}, got {criterion!r}")
    check_prunable(net)
    scores = []
    for layer, readers in zip(body_layers(net), consumers(net)):
        s = layer.weight.detach().abs().flatten(1).sum(1).double().numpy()
        if criterion == "l1-next":
            s = s * sum(outgoing_l1(r, len(s)) for r in readers)
        scores.append(s)
    return scores


def keep_indices(scores: list[np.ndarray], ratio: float, min_channels: int = 1) -> list[np.ndarray]:
    """Per layer, the indices (ascending) of the channels left after removing the lowest ``ratio``."""
    if not 0 <= ratio < 1:
        raise ValueError(f"ratio must be in [0, 1), got {ratio}")
    keep = []
    for s in scores:
        n = max(min(min_channels, len(s)), len(s) - round(len(s) * ratio))
        order = np.argsort(-s, kind="stable")  # ties: the earlier channel stays
        keep.append(np.sort(order[:n]))
    return keep


def prune_channels(net: nn.Module, keep: list[np.ndarray]) -> nn.Module:
    """A new registry net with only the ``keep`` channels of each body layer, weights copied."""
    check_prunable(net)
    old = widths(net)
    if len(keep) != len(old):
        raise ValueError(f"{net.spec.name} has {len(old)} prunable layers, got {len(keep)} index lists")
    keep = [np.sort(np.asarray(k, np.int64)) for k in keep]
    for k, w in zip(keep, old):
        if len(k) == 0 or len(np.unique(k)) != len(k) or k[0] < 0 or k[-1] >= w:
            raise ValueError(f"channel indices must be distinct, in [0, {w}) and not empty")
    small = create_model(net.spec.name, **{**net.overrides, "channels": tuple(len(k) for k in keep)})
    state, j = {}, -1
    prev, prev_width = np.arange(3), 3  # the RGB input
    for i, m in enumerate(net.body):
        if isinstance(m, WEIGHTED):
            j += 1
            rows, cols = torch.from_numpy(keep[j]), torch.from_numpy(input_columns(m, prev, prev_width))
            state[f"body.{i}.weight"] = m.weight.detach()[rows][:, cols]
            if m.bias is not None:
                state[f"body.{i}.bias"] = m.bias.detach()[rows]
            prev, prev_width = keep[j], old[j]
        elif isinstance(m, nn.PReLU):
            w = m.weight.detach()
            state[f"body.{i}.weight"] = w[torch.from_numpy(prev)] if w.numel() > 1 else w
    for name in ("cls", "box", "landmarks"):
        head = getattr(net.heads, name)
        if head is not None:
            state[f"heads.{name}.weight"] = head.weight.detach()[:, torch.from_numpy(input_columns(head, prev,
                                                                                                 prev_width))]
            state[f"heads.{name}.bias"] = head.bias.detach()
    small.load_state_dict({k: v.clone() for k, v in state.items()})
    return small.train(net.training)


def prune(net: nn.Module, ratio: float, criterion: str = "l1", min_channels: int = 1) -> nn.Module:
    """Remove the lowest-scoring ``ratio`` of every body layer's channels (ratio 0: an exact copy)."""
    return prune_channels(net, keep_indices(channel_scores(net, criterion), ratio, min_channels))


# --- iterative pruning with fine-tuning -------------------------------------------------------------------------


def load_stage(source: str | Path, stage: str) -> nn.Module:
    """A stage's torch net from a weight set (name or folder) or a trainer checkpoint (.pt)."""
    if str(source).endswith(".pt"):
        net = load_trained(source)
    else:
        from openmtcnn.runtime.torch import load_net
        net = load_net(str(source), stage).net
    if net.spec.stage != stage:
        raise ValueError(f"{source} holds a {net.spec.stage} net, not {stage}")
    return net.eval()


def net_config(net: nn.Module, stage: str, **kw) -> TrainConfig:
    """The trainer config that rebuilds ``net`` (its registry name and overrides, e.g. pruned widths).

    A net without a landmark head gets no landmark samples in its batches (they would teach it nothing).
    """
    mix = (3, 1, 1, 2) if net.heads.landmarks is not None else (3, 1, 1, 0)
    return TrainConfig(stage=stage, model=net.spec.name, model_kwargs=dict(net.overrides), mix=mix, **kw)


def save_net(net: nn.Module, path: Path, stage: str) -> Path:
    """Write a net as a trainer-style checkpoint (loads with ``load_trained`` and as a ``TrainConfig.init``)."""
    save_checkpoint(path, {"model": net.state_dict(), "config": config_dict(net_config(net, stage))})
    return path


def stage_cost(net: nn.Module, stage: str) -> dict:
    """Parameters and MACs of one stage's net at 640x480 (R-Net/O-Net: the estimator's default crops)."""
    from openmtcnn.compress.memory import estimate

    c = estimate({stage: net}, *VGA)["nets"][stage]
    return {"params": c["params"], "macs_per_call": c["macs_per_call"], "macs_per_frame": c["macs_per_frame"],
            "calls": c["calls"]}


def validate(net: nn.Module, samples, stage: str, seed: int, device: torch.device) -> dict:
    """The trainer's validation metrics on the held-out part of ``samples`` (same split as training)."""
    from openmtcnn.train.trainer import evaluate, split_indices

    cfg = net_config(net, stage, seed=seed)
    _, val = split_indices(samples.indices_by_kind(), cfg.val_fraction, seed)
    metrics = evaluate(net.to(device), samples, val, cfg, device)
    net.cpu().eval()
    return metrics


def wider_ap(checkpoint: Path, stage: str, base: str, folder: Path, images: str, gt: str,
             threads: int | None, show_progress: bool) -> dict:
    """WIDER FACE val AP of the cascade ``base`` with this stage's net from ``checkpoint``."""
    from openmtcnn import MTCNN
    from openmtcnn.evaluate.report import save_widerface
    from openmtcnn.evaluate.widerface import run_widerface
    from openmtcnn.weights.trained import export_trained

    t0 = time.perf_counter()
    weights = export_trained({stage: str(checkpoint)}, folder / "weights", base=base, note="pruned stage")
    results = run_widerface(MTCNN(weights=str(weights), threads=threads), images, gt, folder / "wider",
                            show_progress=show_progress)
    save_widerface(results, {"weights": str(weights), "stage": stage}, folder / "wider")
    return {"ap": {s: round(results[s]["ap"], 4) for s in ("easy", "medium", "hard")},
            "wider_seconds": round(time.perf_counter() - t0, 1)}


def write_json(path: Path, data: dict) -> None:
    atomic_write_bytes(path, (json.dumps(data, indent=1) + "\n").encode())


def read_json(path: Path) -> dict | None:
    """A JSON file of the run (a damaged one is a ValueError naming it), or None when there is none."""
    return fileio.read_json(path) if path.is_file() else None


def check_plan(out: Path, plan: dict) -> None:
    """Record the run's settings; ValueError when ``out`` holds a run made with other ones."""
    old = read_json(out / "plan.json")
    if old is not None and old != plan:
        changed = sorted(k for k in set(old) | set(plan) if old.get(k) != plan.get(k))
        raise ValueError(f"{out} holds a pruning run with other settings ({', '.join(changed)}); use another --out")
    write_json(out / "plan.json", plan)


@dataclass
class PruneConfig:
    """The settings of an iterative pruning run, checked when made so a bad one fails before any training."""

    # the pruning plan
    stage: str
    source: str | Path = "published"  # weight set (name or folder) or trainer checkpoint (.pt) to prune
    steps: int = 3  # prune-and-fine-tune rounds
    ratio: float = 0.25  # share of each layer's channels removed per step
    criterion: str = "l1"  # channel score, one of CRITERIA
    epochs: int = 1  # fine-tuning epochs per step
    steps_per_epoch: int | None = None  # batches per epoch; default: one pass over the positives
    # extra rows for comparison
    finetune_only: bool = False  # the unpruned net fine-tuned as long as one step
    from_scratch: bool = False  # the final widths trained from random weights
    scratch_epochs: int | None = None  # default: steps x epochs, all the fine-tuning together
    # WIDER FACE AP of the cascade with the pruned stage in place
    wider_images: str | None = None  # WIDER_val/images folder (with wider_gt)
    wider_gt: str | None = None  # eval_tools/ground_truth folder (with wider_images)
    base: str | None = None  # the other stages' weight set; default: source when a weight set, else published
    # training
    batch_size: int = 384
    lr: float = 1e-3
    seed: int = 0
    threads: int | None = None
    device: str = "auto"

    def __post_init__(self):
        if self.stage not in TASK_WEIGHTS:
            raise ValueError(f"stage must be one of {list(TASK_WEIGHTS)}, got {self.stage!r}")
        if self.steps < 0:
            raise ValueError(f"steps must be >= 0, got {self.steps}")
        if self.epochs < 1:
            raise ValueError(f"epochs must be >= 1, got {self.epochs}")
        if not 0 <= self.ratio < 1:
            raise ValueError(f"ratio must be in [0, 1), got {self.ratio}")
        if self.criterion not in CRITERIA:
            raise ValueError(f"criterion must be one of {CRITERIA}, got {self.criterion!r}")
        if (self.wider_images is None) != (self.wider_gt is None):
            raise ValueError("give both wider_images and wider_gt, or neither")


def prune_iteratively(cfg: PruneConfig, samples, out_dir: str | Path, show_progress: bool = True,
                      log: Callable[[str], None] = print) -> dict:
    """Prune ``cfg.ratio`` of the channels ``cfg.steps`` times, fine-tuning after each; one table row per step.

    Row ``step0`` is the net from ``cfg.source`` as given. Each step writes
    ``out/stepN/{pruned.pt, train/best.pt, row.json}`` atomically; a step with a row is not
    redone (a later call with WIDER paths only adds the AP). ``cfg.finetune_only`` adds a
    control row: the unpruned net fine-tuned as long as one step. ``cfg.from_scratch`` trains
    the final widths from random weights for ``cfg.scratch_epochs`` (default: all the
    fine-tuning epochs together). The cascade for AP is ``cfg.base`` (default: ``cfg.source``
    when it is a weight set, else "published") with this stage replaced.
    """
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    out = Path(out_dir)
    stage, seed = cfg.stage, cfg.seed
    base = cfg.base or ("published" if str(cfg.source).endswith(".pt") else str(cfg.source))
    scratch_epochs = cfg.scratch_epochs or max(cfg.steps, 1) * cfg.epochs
    check_plan(out, {"stage": stage, "source": str(cfg.source), "ratio": cfg.ratio, "epochs": cfg.epochs,
                     "steps_per_epoch": cfg.steps_per_epoch, "criterion": cfg.criterion,
                     "batch_size": cfg.batch_size, "lr": cfg.lr, "seed": seed, "base": base})
    dev = pick_device(cfg.device)
    train_kw = {"epochs": cfg.epochs, "steps_per_epoch": cfg.steps_per_epoch, "batch_size": cfg.batch_size,
                "lr": cfg.lr, "seed": seed, "threads": cfg.threads, "device": cfg.device}

    def finish(name: str, kind: str, net: nn.Module, ckpt: Path, extra: dict) -> dict:
        """The row of a finished net: costs, validation metrics, AP when asked; written atomically."""
        path = out / name / "row.json"
        row = read_json(path)
        if row is None:
            row = {"name": name, "kind": kind, "widths": list(widths(net)), **stage_cost(net, stage),
                   "val": validate(net, samples, stage, seed, dev),
                   "checkpoint": str(ckpt.relative_to(out)), **extra}  # relative: the folder may move
            write_json(path, row)
        if cfg.wider_images and "ap" not in row:
            row.update(wider_ap(ckpt, stage, base, out / name, cfg.wider_images, cfg.wider_gt, cfg.threads,
                                show_progress))
            write_json(path, row)
        log(f"{name}: widths {row['widths']}  params {row['params']:,}  MMAC/frame {row['macs_per_frame'] / 1e6:.1f}"
            f"  val acc {row['val']['cls_accuracy']:.4f}" + (f"  AP {row['ap']}" if "ap" in row else ""))
        return row

    def reuse(name: str) -> dict | None:
        """The row of a finished step (its net is not trained again), or None."""
        row = read_json(out / name / "row.json")
        return row and finish(name, row["kind"], load_trained(out / row["checkpoint"]), out / row["checkpoint"], {})

    def step(name: str, kind: str, arch: nn.Module, init: Path | None, n_epochs: int, extra: dict) -> dict:
        """Train ``arch``'s architecture from ``init`` (None: random weights) and record its best checkpoint."""
        t0 = time.perf_counter()
        train_cfg = net_config(arch, stage, **{**train_kw, "epochs": n_epochs, "init": str(init) if init else None})
        train(samples, out / name / "train", train_cfg, resume=True, show_progress=show_progress)
        ckpt = out / name / "train" / "best.pt"
        return finish(name, kind, load_trained(ckpt), ckpt,
                      {**extra, "epochs": n_epochs, "train_seconds": round(time.perf_counter() - t0, 1)})

    net = load_stage(cfg.source, stage)
    check_prunable(net)
    start = out / "step0" / "model.pt"
    if not start.is_file():
        save_net(net, start, stage)
    rows = [finish("step0", "original", net, start, {"step": 0})]
    if cfg.finetune_only:
        rows.append(reuse("finetune") or step("finetune", "fine-tuned, not pruned", net, start, cfg.epochs, {}))
    prev = net
    for n in range(1, cfg.steps + 1):
        row = reuse(f"step{n}")
        if row is None:
            path = out / f"step{n}" / "pruned.pt"
            if not path.is_file():  # written once: a resumed step fine-tunes the same pruned net
                save_net(prune(prev, cfg.ratio, cfg.criterion), path, stage)
            pruned = load_trained(path)
            before = validate(pruned, samples, stage, seed, dev)
            row = step(f"step{n}", "pruned + fine-tuned", pruned, path, cfg.epochs,
                       {"step": n, "val_pruned": before})
        rows.append(row)
        prev = load_trained(out / row["checkpoint"])
    if cfg.from_scratch and cfg.steps > 0:
        name = "scratch_" + "-".join(map(str, widths(prev)))
        fresh = create_model(prev.spec.name, **prev.overrides)
        rows.append(reuse(name) or step(name, "same widths, from scratch", fresh, None, scratch_epochs, {}))
    table = {"settings": {**read_json(out / "plan.json"), "steps": cfg.steps,
                          "samples": str(getattr(samples, "folder", "")), "wider_images": cfg.wider_images,
                          "macs_at": list(VGA)}, "rows": rows}
    write_json(out / "table.json", table)
    atomic_write_bytes(out / "table.md", (markdown(table) + "\n").encode())
    plot(table, out / "table.png")
    return table


def markdown(table: dict) -> str:
    """The rows as a Markdown table."""
    s = table["settings"]
    title = (f"{s['stage']} from {s['source']}: {s['steps']} steps of {s['ratio']:g} ({s['criterion']}), "
             f"{s['epochs']} epoch(s) x {s['steps_per_epoch'] or 'all'} steps of fine-tuning; "
             f"MACs at {s['macs_at'][0]}x{s['macs_at'][1]}; AP: cascade {s['base']} with this stage replaced")
    header = ("| row | widths | params | kMAC/call | MMAC/frame | val acc pruned | val acc | recall | val loss | "
              "cls loss | box loss | lmk loss | AP easy | AP medium | AP hard | train s |")
    lines = [title, "", header,
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]

    def f(v, fmt: str) -> str:
        return "" if v is None else format(v, fmt)

    for r in table["rows"]:
        v, ap = r["val"], r.get("ap", {})
        lines.append(f"| {r['name']} ({r['kind']}) | {'/'.join(map(str, r['widths']))} | {r['params']:,} | "
                     f"{r['macs_per_call'] / 1e3:.1f} | {r['macs_per_frame'] / 1e6:.1f} | "
                     f"{f(r.get('val_pruned', {}).get('cls_accuracy'), '.4f')} | {v['cls_accuracy']:.4f} | "
                     f"{v['recall']:.4f} | {v['loss']:.4f} | {v['cls_loss']:.4f} | {v['box_loss']:.4f} | "
                     f"{v['landmark_loss']:.4f} | "
                     f"{f(ap.get('easy'), '.4f')} | {f(ap.get('medium'), '.4f')} | {f(ap.get('hard'), '.4f')} | "
                     f"{f(r.get('train_seconds'), 'g')} |")
    return "\n".join(lines)


def plot(table: dict, path: Path) -> Path | None:
    """AP (or validation accuracy without AP) against MMAC per frame: the pruning path and the other rows."""
    from openmtcnn.evaluate.report import pyplot, save_figure

    plt = pyplot()
    if plt is None:
        return None
    rows = table["rows"]
    with_ap = all("ap" in r for r in rows)
    series = {s: (lambda r, s=s: r["ap"][s]) for s in ("easy", "medium", "hard")} if with_ap else \
        {"val cls accuracy": lambda r: r["val"]["cls_accuracy"]}
    path_rows = [r for r in rows if r["name"].startswith("step")]
    others = [r for r in rows if not r["name"].startswith("step")]
    fig, ax = plt.subplots(figsize=(7, 5), dpi=120)
    for (label, get), colour in zip(series.items(), ("C0", "C1", "C2")):
        x = [r["macs_per_frame"] / 1e6 for r in path_rows]
        ax.plot(x, [get(r) for r in path_rows], "o-", color=colour, label=f"{label} (pruned path)")
        for r, xi in zip(path_rows, x):
            ax.annotate(r["name"], (xi, get(r)), textcoords="offset points", xytext=(4, 4), fontsize=7)
        for r, marker in zip(others, ("s", "*", "^", "v")):
            ax.plot([r["macs_per_frame"] / 1e6], [get(r)], marker, color=colour, ms=9, mfc="none",
                    label=f"{label}: {r['kind']}")
    s = table["settings"]
    ax.set(xlabel=f"{s['stage']} MMAC per {s['macs_at'][0]}x{s['macs_at'][1]} frame",
           ylabel="WIDER val AP" if with_ap else "validation accuracy",
           title=f"{s['stage']}: {s['ratio']:g} of channels pruned per step ({s['criterion']})")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="center right")
    fig.tight_layout()
    return save_figure(fig, path)
