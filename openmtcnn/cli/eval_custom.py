"""``openmtcnn eval custom``: precision, recall, F1 and AP on your own labelled images (npy, COCO or YOLO)."""
from __future__ import annotations

import argparse
from pathlib import Path

from openmtcnn.cli.errors import report_unreadable
from openmtcnn.cli.options import add_detector_args, detector_settings, make_detector

FORMATS = {
    "npy": "--images IMAGES.npy --labels LABELS.npy (or --images DATA.npz holding 'images' and 'boxes')",
    "coco": "--images FOLDER --labels ANNOTATIONS.json",
    "yolo": "--images FOLDER --labels FOLDER (one .txt per image, class cx cy w h normalised)",
}


def register(groups) -> None:
    """Add ``eval custom``."""
    p = groups.eval.add_parser(
        "custom", help="precision, recall, F1 and AP on your own labelled images (npy, COCO JSON or YOLO txt)",
        description="; ".join(f"{k}: {v}" for k, v in FORMATS.items()))
    add_dataset_args(p, required=True)
    p.add_argument("--score-threshold", type=float, default=None,
                   help="count TP/FP/FN over detections scoring at least this (default: all the detector returns)")
    p.add_argument("--out", default="runs/custom", help="folder for results.json and pr_curve.png")
    add_detector_args(p)
    p.set_defaults(func=cmd_eval_custom)


def add_dataset_args(p: argparse.ArgumentParser, required: bool, images: bool = True) -> None:
    """The arguments that describe a custom dataset (shared with ``eval compare --on custom``)."""
    p.add_argument("--format", required=required, choices=list(FORMATS), help="how the dataset is stored")
    if images:
        p.add_argument("--images", required=required,
                       help="npy: images .npy (N x H x W x 3 or N x H x W uint8) or .npz; coco, yolo: images folder")
    p.add_argument("--labels", help="npy: labels .npy/.npz (per-image box lists, or rows image_index x1 y1 x2 y2); "
                                    "coco: annotations JSON; yolo: labels folder")
    p.add_argument("--box-format", choices=["xyxy", "xywh"], default="xyxy",
                   help="npy: box columns x1 y1 x2 y2 (default) or x y w h")
    p.add_argument("--allow-pickle", action="store_true",
                   help="npy: allow loading object arrays (per-image box lists); runs pickle, so trusted files only")
    p.add_argument("--category", nargs="+", metavar="C",
                   help="coco: category names or ids to count as faces; yolo: class ids (default: all)")
    p.add_argument("--iou", type=float, default=0.5, help="IoU for a detection to match a face (default 0.5)")


def load_dataset(args: argparse.Namespace) -> tuple[list, dict]:
    """The dataset the arguments describe and a description of it; UsageError for missing or misplaced paths."""
    from openmtcnn.cli.errors import UsageError
    from openmtcnn.evaluate import custom

    images, labels = Path(args.images), None if args.labels is None else Path(args.labels)
    source = {"format": args.format, "images": str(images), "labels": None if labels is None else str(labels)}
    if args.category and args.format == "npy":
        raise UsageError("--category applies to --format coco or yolo")
    if args.format == "npy":
        if not images.is_file():
            raise UsageError(f"--images file not found: {images}")
        if labels is None and images.suffix.lower() != ".npz":
            raise UsageError("--format npy needs --labels (or an .npz --images holding 'images' and 'boxes')")
        if labels is not None and not labels.is_file():
            raise UsageError(f"--labels file not found: {labels}")
        source["box_format"] = args.box_format
        return custom.load_arrays(images, labels, args.box_format, args.allow_pickle), source
    if labels is None:
        raise UsageError(f"--format {args.format} needs --labels ({FORMATS[args.format]})")
    if not images.is_dir():
        raise UsageError(f"--images folder not found: {images}")
    source["category"] = args.category
    if args.format == "coco":
        if not labels.is_file():
            raise UsageError(f"--labels annotation file not found: {labels}")
        return custom.load_coco(labels, images, args.category), source
    if not labels.is_dir():
        raise UsageError(f"--labels folder not found: {labels}")
    try:
        classes = None if args.category is None else [int(c) for c in args.category]
    except ValueError:
        raise UsageError(f"--category for yolo takes integer class ids, got {' '.join(args.category)}") from None
    return custom.load_yolo(images, labels, classes), source


def cmd_eval_custom(args: argparse.Namespace) -> int:
    """Load, detect, score and save; exit code 1 when some images could not be read (their faces count as missed)."""
    from openmtcnn.cli.errors import UsageError
    from openmtcnn.evaluate.custom import run_custom, summary

    if not 0 <= args.iou <= 1:
        raise UsageError(f"--iou must be in [0, 1], got {args.iou}")
    dataset, source = load_dataset(args)
    settings = detector_settings(args)
    results = run_custom(make_detector(args), dataset, args.out, iou=args.iou,
                         score_threshold=args.score_threshold, settings=settings, source=source)
    print(summary(results))
    print(f"results in {args.out}/ (results.json, pr_curve.png)")
    return report_unreadable(results["failed"]["images"], "image", results["images"])
