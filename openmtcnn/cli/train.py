"""``openmtcnn data`` and ``openmtcnn train``: samples, training, hard example mining, the whole pipeline."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from openmtcnn.cli.errors import UsageError
from openmtcnn.geometry import INPUT_SIZES as SIZES



def sources(args: argparse.Namespace):
    """The training data the command names (UsageError when a folder is not what it should be)."""
    from openmtcnn.train.pipeline import Sources

    if args.landmark_boxes and args.landmarks is None:
        raise UsageError("--landmark-boxes needs --landmarks (the CNN_FacePoint root)")
    try:
        return Sources(args.wider or "", args.landmarks, args.landmark_boxes)
    except FileNotFoundError as e:
        raise UsageError(str(e).replace("the WIDER FACE root", "--wider").replace("the CNN_FacePoint root",
                                                                                  "--landmarks")) from None


def sample_config(args: argparse.Namespace):
    """How samples are made, from the command line."""
    from openmtcnn.data import SampleConfig

    if not args.neg_ratio > 0:
        raise UsageError(f"--neg-ratio must be > 0, got {args.neg_ratio}")
    if not args.min_face > 0:
        raise UsageError(f"--min-face must be > 0, got {args.min_face}")
    return SampleConfig(seed=args.seed, limit=args.limit, workers=args.workers, neg_ratio=args.neg_ratio,
                        landmark_frame=args.landmark_frame, min_face=args.min_face)


def train_config(stage: str, args: argparse.Namespace):
    """The trainer's settings for one stage from the command line (UsageError or ValueError when bad)."""
    from openmtcnn.train.trainer import TrainConfig

    return TrainConfig(stage=stage, model=stage_model(stage, args), epochs=stage_epochs(stage, args),
                       batch_size=args.batch_size, lr=args.lr, steps_per_epoch=args.steps, seed=args.seed,
                       device=args.device, threads=args.threads, init=args.init, jitter=args.jitter,
                       blur=args.blur, mix=tuple(args.mix), train_only=tuple(args.train_only or ()),
                       task_weights=args.task_weights, precision=args.precision)


def distillation(args: argparse.Namespace):
    """``stage -> extra loss`` for --teacher, or None."""
    if not args.teacher:
        return None
    from openmtcnn.compress.distill import distillation_loss

    return lambda stage: distillation_loss(args.teacher, stage, weight=args.distill_weight, device=args.device)


def stage_epochs(stage: str, args: argparse.Namespace) -> int:
    """--epochs for this stage: one number for every stage, or three (P-Net R-Net O-Net) with 'all'."""
    epochs = list(args.epochs)
    if len(epochs) not in ((1, 3) if args.stage == "all" else (1,)) or min(epochs) < 1:
        wanted = "one number, or three (P-Net R-Net O-Net) with 'all'" if args.stage == "all" else "one number"
        raise UsageError(f"--epochs takes {wanted} >= 1, got {' '.join(map(str, epochs))}")
    return epochs[0] if len(epochs) == 1 else epochs[list(SIZES).index(stage)]


def stage_model(stage: str, args: argparse.Namespace) -> str | None:
    """The registry net to train for a stage: --model, else the --variant family's, else the default."""
    from openmtcnn.models import model_spec, variant_models

    if args.model:
        if model_spec(args.model).stage == stage:
            return args.model
        if args.stage != "all":
            raise UsageError(f"--model {args.model} is not a {stage} net")
    return variant_models(args.variant)[stage] if args.variant else None


def cmd_data(args: argparse.Namespace) -> int:
    from openmtcnn.train.pipeline import make_samples

    cfg = sample_config(args)  # bad settings first, before the folders are read
    data = sources(args)
    if args.landmarks_only and args.landmarks is None:
        raise UsageError("--landmarks-only needs --landmarks (the CNN_FacePoint root)")
    if args.stage != "pnet" and not (args.random or args.landmarks_only) and args.weights is None:
        raise UsageError(f"{args.stage} samples are mined with trained earlier stages: pass --weights")
    summary = make_samples(args.stage, data, Path(args.out), cfg, args.weights, random=args.random,
                           landmarks_only=args.landmarks_only)
    print(json.dumps({k: v for k, v in summary.items() if k in ("counts", "shards", "bytes", "seconds")}))
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from openmtcnn.data import SampleSet
    from openmtcnn.train.pipeline import PipelineConfig, train_all
    from openmtcnn.train.trainer import train

    configs = {stage: train_config(stage, args) for stage in (SIZES if args.stage == "all" else [args.stage])}
    extra = distillation(args)  # bad settings above fail now, not after an hour of sample generation
    if args.stage == "all":
        cfg = PipelineConfig(sources(args), sample_config(args), configs, random=args.random)
        train_all(cfg, Path(args.out), resume=not args.no_resume, extra_loss=extra)
        print(f"weight set: {Path(args.out) / 'weights'} (use MTCNN(weights='{Path(args.out) / 'weights'}'))")
        return 0
    if args.random:
        raise UsageError("--random is for 'train all'; for one net, join sets with --data MINED RANDOM")
    for folder in args.data or [None]:
        if not folder or not (Path(folder) / "manifest.json").is_file():
            raise UsageError(f"--data must be sample set folders (with manifest.json): {folder}")
    result = train(SampleSet(*[Path(f) for f in args.data]), Path(args.out), configs[args.stage],
                   resume=not args.no_resume, extra_loss=extra(args.stage) if extra else None)
    last = result["history"][-1] if result["history"] else {}
    print(json.dumps({k: last[k] for k in last if k.startswith("val_")}, indent=1))
    return 0


def register(groups) -> None:
    """Add ``data`` and ``train``."""
    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument("--wider", help="WIDER FACE root (wider_face_split/, WIDER_train/images)")
        p.add_argument("--landmarks", help="CNN_FacePoint root (trainImageList.txt); landmark samples")
        p.add_argument("--landmark-boxes", action="store_true",
                       help="also crop (and mine) around the CNN_FacePoint train faces, their boxes moved to "
                            "WIDER's convention: more faces than the WIDER pictures hold (needs --landmarks; "
                            "on the WIDER subset it lowered AP, see the README)")
        p.add_argument("--landmark-frame", choices=["facepoint", "wider"], default="facepoint",
                       help="landmark samples cropped around CNN_FacePoint's own boxes (brows to mouth, default) "
                            "or around them moved to WIDER's convention, the boxes O-Net is given when detecting")
        p.add_argument("--neg-ratio", type=float, default=3.0,
                       help="rnet/onet mining: negatives kept per picture, at most this many times its positives "
                            "(default 3)")
        p.add_argument("--min-face", type=float, default=20.0,
                       help="faces whose longer side is under this many pixels are neither cropped around nor "
                            "taught as positives or parts (default 20)")
        p.add_argument("--limit", type=int, help="use only the first N pictures of each list (quick runs)")
        p.add_argument("--workers", type=int, default=2, help="processes for sample generation (default 2)")
        p.add_argument("--seed", type=int, default=0)

    p = groups.top.add_parser("data", help="generate training samples (random crops, or hard examples of --weights)")
    p.add_argument("stage", choices=list(SIZES))
    p.add_argument("--out", required=True, help="folder; the set goes to OUT/12, OUT/24 or OUT/48")
    p.add_argument("--weights", help="rnet/onet: weight set whose earlier stages propose the crops; pnet: "
                   "whose P-Net proposes them (its false alarms as hard negatives, to join with a random set)")
    p.add_argument("--random", action="store_true",
                   help="rnet/onet: jittered squares around the faces instead (positives and parts only), "
                        "to train on together with the mined set")
    p.add_argument("--landmarks-only", action="store_true",
                   help="only the CNN_FacePoint landmark samples (those a mined set holds, without mining), "
                        "e.g. to retrain a landmark head with --train-only")
    common(p)
    p.set_defaults(func=cmd_data)

    p = groups.top.add_parser("train", help="train a net on a sample set, or the whole cascade (all)")
    p.add_argument("stage", choices=[*SIZES, "all"])
    p.add_argument("--data", nargs="+", help="sample set folder(s) of one crop size, joined (pnet: OUT/12 of "
                   "openmtcnn data; rnet: e.g. mined OUT/24 plus a --random OUT/24)")
    p.add_argument("--out", required=True, help="checkpoints (last.pt, best.pt, history.json); all: everything")
    p.add_argument("--epochs", type=int, nargs="+", default=[10],
                   help="epochs (default 10); for 'all' one number or three (P-Net R-Net O-Net)")
    p.add_argument("--batch-size", type=int, default=384)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--steps", type=int, help="batches per epoch (default: one pass over the positives)")
    p.add_argument("--device", default="auto", help="cpu, cuda or auto (default)")
    p.add_argument("--threads", type=int)
    p.add_argument("--jitter", type=float, default=0.0,
                   help="photometric augmentation: contrast and brightness changed by up to this fraction "
                        "(e.g. 0.2; default 0, off)")
    p.add_argument("--blur", type=float, default=0.0,
                   help="fraction of samples (0-1) shrunk to 40-99%% of the crop side and enlarged back, the "
                        "blur of small faces the cascade enlarges (default 0, off)")
    p.add_argument("--mix", type=int, nargs=4, default=[3, 1, 1, 2], metavar=("NEG", "POS", "PART", "LMK"),
                   help="samples of each kind per batch, as ratios (default 3 1 1 2)")
    p.add_argument("--task-weights", type=float, nargs=3, metavar=("CLS", "BOX", "LMK"),
                   help="loss weights of the three tasks (default: the paper's, 1 0.5 0.5; O-Net 1 0.5 1)")
    p.add_argument("--precision", choices=["fp32", "bf16"], default="fp32",
                   help="bf16: forward passes in bfloat16 autocast, weights and losses in fp32; faster on CPUs "
                        "with AMX, slower on some others (docs/training.md)")
    p.add_argument("--no-resume", action="store_true", help="start again even if OUT/last.pt exists")
    p.add_argument("--variant", help="model family to train (published, paper, lite, large-pnet, mcu; "
                   "default: the paper's nets with landmark heads)")
    p.add_argument("--model", help="registry name of the net to train (one stage)")
    p.add_argument("--init", help="start from a weight set or checkpoint (.pt) instead of random weights")
    p.add_argument("--train-only", nargs="+", metavar="PREFIX",
                   help="train only these parameters, the rest frozen, e.g. heads.landmarks with --init: "
                        "better landmarks while face scores and boxes stay exactly as they were")
    p.add_argument("--teacher", help="distil from this weight set's net of the same stage (e.g. published)")
    p.add_argument("--distill-weight", type=float, default=1.0, help="weight of the distillation term (default 1)")
    p.add_argument("--random", action="store_true", help="all: R-Net and O-Net also learn from jittered squares "
                   "around the faces (positives and parts), joined with the mined sets")
    common(p)
    p.set_defaults(func=cmd_train)
