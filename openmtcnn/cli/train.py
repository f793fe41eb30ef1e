"""``openmtcnn data`` and ``openmtcnn train``: samples, training, hard example mining, the whole pipeline."""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Callable

import numpy as np

from openmtcnn.cli.errors import UsageError

SIZES = {"pnet": 12, "rnet": 24, "onet": 48}


def wider_paths(root: str) -> tuple[Path, Path]:
    """The train txt and images folder under a WIDER FACE root."""
    r = Path(root)
    txt, images = r / "wider_face_split" / "wider_face_train_bbx_gt.txt", r / "WIDER_train" / "images"
    if not txt.is_file() or not images.is_dir():
        raise UsageError(f"--wider must hold wider_face_split/wider_face_train_bbx_gt.txt and WIDER_train/images: {r}")
    return txt, images


def facepoint_paths(root: str | None) -> tuple[Path | None, Path | None]:
    """The train list and images root of CNN_FacePoint (or none: no landmark samples)."""
    if root is None:
        return None, None
    r = Path(root)
    if not (r / "trainImageList.txt").is_file():
        raise UsageError(f"--landmarks must hold trainImageList.txt: {r}")
    return r / "trainImageList.txt", r


def proposer(weights: str, stage: str, threads: int | None = None) -> Callable[[np.ndarray], np.ndarray]:
    """Boxes the stages before ``stage`` pass on: P-Net's for R-Net data, P-Net then R-Net's for O-Net data."""
    from openmtcnn import MTCNN
    from openmtcnn.detect import boxes as B

    detector = MTCNN(weights=weights, threads=threads, device="cpu")  # the same samples on every machine

    def propose(rgb: np.ndarray) -> np.ndarray:
        integral = B.integral_image(rgb)
        c = detector.propose(rgb, integral)
        if stage == "onet":
            c = detector.refine([rgb], [integral], [c], "rnet")[0]
        return c.boxes

    return propose


def make_samples(stage: str, args: argparse.Namespace, out: Path, weights: str | None = None,
                 random: bool = False) -> dict:
    """Sample set for one stage: random crops for P-Net, hard examples of ``weights`` for R-Net and O-Net
    (``random``: jittered squares around the faces for R-Net and O-Net instead)."""
    from openmtcnn.data import (
        facepoint_pictures,
        generate_hard,
        generate_pnet,
        generate_random,
        read_facepoint,
        read_wider,
    )

    if not args.neg_ratio > 0:
        raise UsageError(f"--neg-ratio must be > 0, got {args.neg_ratio}")
    if args.landmark_boxes and args.landmarks is None:
        raise UsageError("--landmark-boxes needs --landmarks (the CNN_FacePoint root)")
    txt, images = wider_paths(args.wider)
    lm_list, lm_images = facepoint_paths(args.landmarks)
    extra = facepoint_pictures(read_facepoint(lm_list, lm_images)) if args.landmark_boxes else []
    if stage == "pnet":
        return generate_pnet(txt, images, lm_list, lm_images, out, seed=args.seed, workers=args.workers,
                             limit=args.limit, extra=extra, landmark_frame=args.landmark_frame)
    if random:  # positives and parts only, to join with a mined set (train --data A B)
        return generate_random(txt, images, None, None, out, size=SIZES[stage], seed=args.seed,
                               workers=args.workers, limit=args.limit, negatives=0, near=0, extra=extra)
    if weights is None:
        raise UsageError(f"{stage} samples are mined with trained earlier stages: pass --weights")
    pictures = [(w.path, w.boxes) for w in read_wider(txt, images)]
    return generate_hard(pictures, proposer(weights, stage), out, SIZES[stage], seed=args.seed,
                         limit=args.limit, tag=f"{weights}:{stage}", facepoint_list=lm_list,
                         facepoint_images=lm_images, extra=extra, landmark_frame=args.landmark_frame,
                         neg_ratio=args.neg_ratio, workers=args.workers)


def train_config(stage: str, args: argparse.Namespace):
    """The trainer's settings for one stage from the command line (UsageError or ValueError when bad)."""
    from openmtcnn.train.trainer import TrainConfig

    return TrainConfig(stage=stage, model=stage_model(stage, args), epochs=stage_epochs(stage, args),
                       batch_size=args.batch_size, lr=args.lr, steps_per_epoch=args.steps, seed=args.seed,
                       device=args.device, threads=args.threads, init=args.init, jitter=args.jitter,
                       mix=tuple(args.mix), train_only=tuple(args.train_only or ()))


def train_stage(stage: str, data: list[Path], out: Path, args: argparse.Namespace) -> dict:
    """Train one net on the sample set folders ``data``, joined."""
    from openmtcnn.data import SampleSet
    from openmtcnn.train.trainer import train

    cfg = train_config(stage, args)
    extra = None
    if args.teacher:
        from openmtcnn.compress.distill import distillation_loss
        extra = distillation_loss(args.teacher, stage, weight=args.distill_weight, device=args.device)
    return train(SampleSet(*data), out, cfg, resume=not args.no_resume, extra_loss=extra)


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
    summary = make_samples(args.stage, args, Path(args.out), args.weights, random=args.random)
    print(json.dumps({k: v for k, v in summary.items() if k in ("counts", "shards", "bytes", "seconds")}))
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    for stage in SIZES if args.stage == "all" else [args.stage]:
        train_config(stage, args)  # bad settings fail now, not after an hour of sample generation
    if args.stage == "all":
        return train_all(args)
    if args.random:
        raise UsageError("--random is for 'train all'; for one net, join sets with --data MINED RANDOM")
    for folder in args.data or [None]:
        if not folder or not (Path(folder) / "manifest.json").is_file():
            raise UsageError(f"--data must be sample set folders (with manifest.json): {folder}")
    result = train_stage(args.stage, [Path(f) for f in args.data], Path(args.out), args)
    last = result["history"][-1] if result["history"] else {}
    print(json.dumps({k: last[k] for k in last if k.startswith("val_")}, indent=1))
    return 0


def train_all(args: argparse.Namespace) -> int:
    """Samples -> P-Net -> mined samples -> R-Net -> mined samples -> O-Net -> one weight set.

    With ``--random`` R-Net and O-Net also learn from jittered squares around the faces (OUT/random).
    """
    from openmtcnn.export.trained import export_trained

    out = Path(args.out)
    checkpoints, report = {}, {}
    for stage in ("pnet", "rnet", "onet"):
        t0 = time.perf_counter()
        weights = str(export_trained(checkpoints, out / f"weights_{stage}_mining")) if checkpoints else None
        summary = make_samples(stage, args, out / "samples", weights)
        data, counts = [out / "samples" / str(SIZES[stage])], {"samples": summary.get("counts")}
        if args.random and stage != "pnet":
            counts["random_samples"] = make_samples(stage, args, out / "random", random=True).get("counts")
            data.append(out / "random" / str(SIZES[stage]))
        t1 = time.perf_counter()
        result = train_stage(stage, data, out / stage, args)
        checkpoints[stage] = out / stage / "best.pt"
        report[stage] = {**counts, "sample_seconds": round(t1 - t0, 1),
                         "train_seconds": round(time.perf_counter() - t1, 1),
                         "final": result["history"][-1] if result["history"] else None}
        print(json.dumps({stage: report[stage]}, indent=1))
    folder = export_trained(checkpoints, out / "weights", note="openmtcnn train all")
    (out / "pipeline.json").write_text(json.dumps(report, indent=1) + "\n")
    print(f"weight set: {folder} (use MTCNN(weights='{folder}'))")
    return 0


def cmd_export_trained(args: argparse.Namespace) -> int:
    from openmtcnn.export.trained import export_trained

    run = Path(args.run)
    checkpoints = {s: run / s / "best.pt" for s in SIZES if (run / s / "best.pt").is_file()}
    if not checkpoints:
        raise UsageError(f"no pnet/, rnet/ or onet/ best.pt under {run}")
    command = f"openmtcnn export trained {args.run} --out {args.out} --base {args.base}"
    folder = export_trained(checkpoints, args.out, base=args.base, note=f"{args.note} (made by: {command})".strip())
    print(f"wrote {folder} from {', '.join(sorted(checkpoints))}")
    return 0


def register(sub, export, compress) -> None:
    """Add ``data``, ``train`` and ``export trained``."""
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
        p.add_argument("--limit", type=int, help="use only the first N pictures of each list (quick runs)")
        p.add_argument("--workers", type=int, default=2, help="processes for sample generation (default 2)")
        p.add_argument("--seed", type=int, default=0)

    p = sub.add_parser("data", help="generate training samples (random crops, or hard examples of --weights)")
    p.add_argument("stage", choices=list(SIZES))
    p.add_argument("--out", required=True, help="folder; the set goes to OUT/12, OUT/24 or OUT/48")
    p.add_argument("--weights", help="rnet/onet: weight set whose earlier stages propose the crops")
    p.add_argument("--random", action="store_true",
                   help="rnet/onet: jittered squares around the faces instead (positives and parts only), "
                        "to train on together with the mined set")
    common(p)
    p.set_defaults(func=cmd_data)

    p = sub.add_parser("train", help="train a net on a sample set, or the whole cascade (all)")
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
    p.add_argument("--mix", type=int, nargs=4, default=[3, 1, 1, 2], metavar=("NEG", "POS", "PART", "LMK"),
                   help="samples of each kind per batch, as ratios (default 3 1 1 2)")
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

    p = export.add_parser("trained", help="trained checkpoints as a weight set")
    p.add_argument("run", help="training folder holding pnet/, rnet/, onet/ with best.pt (as train all writes)")
    p.add_argument("--out", required=True, help="weight set folder (under openmtcnn/weights/ to ship it)")
    p.add_argument("--base", default="published", help="weight set for stages without a checkpoint")
    p.add_argument("--note", default="", help="free text kept in the manifest")
    p.set_defaults(func=cmd_export_trained)
