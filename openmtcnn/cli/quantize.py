"""``openmtcnn compress quantize`` (int8 PTQ of a weight set) and ``openmtcnn compress qat`` (int8 QAT of a stage)."""
from __future__ import annotations

import argparse
import json
import math
import shlex
from pathlib import Path

from openmtcnn.cli.errors import UsageError
from openmtcnn.geometry import INPUT_SIZES as SIZES



def command_line(prefix: str, args: argparse.Namespace, names: list[str]) -> str:
    """The command as typed, rebuilt from its parsed options (recorded in manifests)."""
    parts = [prefix]
    for name in names:
        value = getattr(args, name)
        if value is None or value is False or value == []:
            continue
        flag = "--" + name.replace("_", "-")
        if value is True:
            parts.append(flag)
        elif isinstance(value, list):
            parts += [x for v in value for x in (flag, str(v))]
        else:
            parts += [flag, str(value)]
    return " ".join([parts[0], *(shlex.quote(p) for p in parts[1:])])


def parse_float_layers(specs: list[str]) -> dict[str, list[str]]:
    """STAGE:LAYER entries (e.g. pnet:body.0, onet:heads) as {stage: [layer prefixes]}."""
    skip: dict[str, list[str]] = {}
    for spec in specs:
        stage, _, layer = spec.partition(":")
        if stage not in SIZES or not layer:
            raise UsageError(f"--float takes STAGE:LAYER with STAGE one of {list(SIZES)} (e.g. pnet:body.0), got {spec!r}")
        skip.setdefault(stage, []).append(layer)
    return skip


def cmd_quantize(args: argparse.Namespace) -> int:
    from openmtcnn import weights as store
    from openmtcnn.compress.quantize import calibration_images, quantize_weight_set

    store.weights_dir(args.weights)  # unknown names fail here with the list of weight sets
    if not Path(args.calib).is_dir():
        raise UsageError(f"--calib folder not found: {args.calib}")
    if args.images is not None and args.images < 1:
        raise UsageError(f"--images must be at least 1, got {args.images}")
    try:
        images = calibration_images(args.calib, args.images)
    except ValueError as e:
        raise UsageError(str(e)) from None
    command = command_line("openmtcnn compress quantize", args, ["weights", "calib", "images", "method"] +
                           (["percentile"] if args.method == "percentile" else []) + ["float", "threads", "out"])
    folder = quantize_weight_set(args.weights, images, args.out, method=args.method, percentile=args.percentile,
                                 skip=parse_float_layers(args.float), threads=args.threads, command=command)
    print(f"wrote int8 weight set {folder} (calibrated on {len(images)} images of {args.calib})")
    return 0


def qat_model(init: str, stage: str) -> tuple[str, dict]:
    """The registry net (and overrides) that ``--init`` holds for a stage."""
    if init.endswith(".pt"):
        import torch

        config = torch.load(init, map_location="cpu", weights_only=True)["config"]
        if config["stage"] != stage:
            raise UsageError(f"--init {init} is a {config['stage']} checkpoint, not {stage}")
        return config["model"], config.get("model_kwargs") or {}
    from openmtcnn import weights as store

    info = store.manifest(init)
    return info["models"][stage], info.get("model_kwargs", {}).get(stage, {})


def cmd_qat(args: argparse.Namespace) -> int:
    from openmtcnn.compress.quantize import export_qat, qat_hook
    from openmtcnn.data import SampleSet
    from openmtcnn.train.trainer import TrainConfig, epoch_batches, split_indices, train

    if not (Path(args.data) / "manifest.json").is_file():
        raise UsageError(f"--data must be a sample set folder (with manifest.json): {args.data}")
    samples = SampleSet(args.data)
    if samples.size != SIZES[args.stage]:
        raise UsageError(f"--data holds {samples.size}x{samples.size} samples; {args.stage} takes "
                         f"{SIZES[args.stage]}x{SIZES[args.stage]}")
    model, kwargs = qat_model(args.init, args.stage)
    cfg = TrainConfig(stage=args.stage, model=model, epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
                      steps_per_epoch=args.steps, seed=args.seed, threads=args.threads, device="cpu",
                      model_kwargs=kwargs, init=args.init)
    freeze = args.freeze_after
    if freeze is None:  # half of the run: ranges settle, then the weights adapt to fixed ranges
        per_epoch = len(epoch_batches(split_indices(samples.indices_by_kind(), cfg.val_fraction, cfg.seed)[0], cfg, 0))
        freeze = max(1, math.ceil(per_epoch * args.epochs / 2))
    extra = None
    if args.teacher:  # the float net's outputs as targets: the int8 net learns to behave like it
        from openmtcnn.compress.distill import distillation_loss
        extra = distillation_loss(args.teacher, args.stage, weight=args.distill_weight, device="cpu")
    result = train(samples, args.out, cfg, resume=not args.no_resume, prepare=qat_hook(freeze_after=freeze),
                   extra_loss=extra)
    last = result["history"][-1] if result["history"] else {}
    print(json.dumps({k: last[k] for k in last if k.startswith("val_")}, indent=1))
    command = command_line(f"openmtcnn compress qat {args.stage}", args,
                           ["data", "init", "out", "epochs", "steps", "batch_size", "lr", "freeze_after", "teacher"] +
                           (["distill_weight"] if args.teacher else []) + ["base", "seed", "threads", "no_resume"])
    folder = export_qat(Path(args.out) / "best.pt", Path(args.out) / "weights", base=args.base, command=command)
    print(f"wrote int8 weight set {folder} ({args.stage} after QAT, other stages from {args.base}); "
          f"activation ranges frozen after {freeze} batches")
    return 0


def register(groups) -> None:
    """Add ``compress quantize`` and ``compress qat``."""
    p = groups.compress.add_parser("quantize", help="int8 post-training quantisation of a weight set (ONNX QDQ)")
    p.add_argument("--weights", default="published", help="float weight set to quantise (default: published)")
    p.add_argument("--calib", required=True, help="folder of calibration images, searched recursively (e.g. "
                   "WIDER_train/images; never the images you evaluate on)")
    p.add_argument("--images", type=int, default=100, help="calibration images, spread over the sorted files "
                   "(default 100)")
    p.add_argument("--method", choices=["minmax", "percentile"], default="minmax",
                   help="activation ranges: min/max of the calibration data, or percentiles (default minmax)")
    p.add_argument("--percentile", type=float, default=99.99, help="with --method percentile (default 99.99)")
    p.add_argument("--float", action="append", default=[], metavar="STAGE:LAYER",
                   help="keep a layer float, e.g. pnet:body.0 or onet:heads (repeatable)")
    p.add_argument("--threads", type=int, default=1, help="CPU threads (default 1)")
    p.add_argument("--out", required=True, help="weight set folder to write (under openmtcnn/weights/ to ship it)")
    p.set_defaults(func=cmd_quantize)

    p = groups.compress.add_parser("qat", help="int8 quantisation-aware fine-tuning of one stage, "
                                               "exported as a weight set")
    p.add_argument("stage", choices=list(SIZES))
    p.add_argument("--data", required=True, help="sample set of the stage (e.g. runs/train_16/samples/24)")
    p.add_argument("--init", default="published", help="weight set or checkpoint (.pt) to start from")
    p.add_argument("--out", required=True, help="folder for checkpoints; the weight set goes to OUT/weights")
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--steps", type=int, help="batches per epoch (default: one pass over the positives)")
    p.add_argument("--batch-size", type=int, default=384)
    p.add_argument("--lr", type=float, default=1e-4, help="learning rate (default 1e-4: a fine-tune)")
    p.add_argument("--freeze-after", type=int, help="batches after which activation ranges freeze (default: half)")
    p.add_argument("--teacher", help="also distil from this float weight set's net of the stage (e.g. published)")
    p.add_argument("--distill-weight", type=float, default=1.0, help="weight of the distillation term (default 1)")
    p.add_argument("--base", default="published-int8", help="weight set for the other stages (default published-int8)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--no-resume", action="store_true", help="start again even if OUT/last.pt exists")
    p.set_defaults(func=cmd_qat)
