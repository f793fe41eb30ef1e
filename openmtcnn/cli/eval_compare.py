"""``openmtcnn eval compare``: several models side by side on one dataset (table and plots)."""
from __future__ import annotations

import argparse
from pathlib import Path

from openmtcnn.cli.errors import UsageError
from openmtcnn.cli.eval_custom import add_dataset_args
from openmtcnn.cli.options import add_detector_args


def cmd_eval_compare(args: argparse.Namespace) -> int:
    """Check the dataset options of --on, run every model on it, write the report."""
    from openmtcnn import MTCNN
    from openmtcnn.cli.eval_custom import load_dataset
    from openmtcnn.evaluate.compare import (
        compare,
        custom_protocol,
        fddb_protocol,
        landmarks_protocol,
        parse_model,
        widerface_protocol,
    )

    needed = {"widerface": ("images", "gt"), "landmarks": ("images", "list"), "fddb": ("images", "folds"),
              "custom": ("images", "format")}[args.on]
    for name in needed:
        value = getattr(args, name)
        if not value or (name != "format" and not Path(value).exists()):
            raise UsageError(f"--on {args.on} needs --{name}" + ("" if name == "format" else " (an existing path)"))
    if args.on == "widerface":
        protocol = widerface_protocol(args.images, args.gt)
    elif args.on == "landmarks":
        protocol = landmarks_protocol(args.list, args.images)
    elif args.on == "fddb":
        protocol = fddb_protocol(args.images, args.folds)
    else:
        protocol = custom_protocol(load_dataset(args)[0], args.iou)

    def detector(spec: str):
        name, settings = parse_model(spec)
        base = {"min_face_size": args.min_face, "scale_factor": args.scale_factor,
                "thresholds": args.thresholds, "threads": args.threads, "device": args.device}
        try:
            return MTCNN(weights=name, **{**base, **settings})
        except TypeError as e:
            raise ValueError(f"bad settings in model spec {spec!r}: {e}") from None

    print(compare(args.models, detector, protocol, args.out, args.on))
    print(f"report: {Path(args.out) / 'report.md'}")
    return 0


def register(groups) -> None:
    """Add ``eval compare``."""
    p = groups.eval.add_parser("compare", help="several models side by side on one dataset (table + plots)")
    p.add_argument("models", nargs="+", help="weight set names or folders, optionally NAME:key=value,... "
                   "(e.g. published:min_face_size=40)")
    p.add_argument("--on", required=True, choices=["widerface", "landmarks", "fddb", "custom"], help="dataset protocol")
    p.add_argument("--images", help="images (widerface: WIDER_val/images; landmarks: the list's root; "
                   "fddb: originalPics; custom: see eval custom)")
    p.add_argument("--gt", help="widerface: eval_tools/ground_truth folder")
    p.add_argument("--list", help="landmarks: CNN_FacePoint or plain landmark list")
    p.add_argument("--folds", help="fddb: FDDB-folds folder")
    add_dataset_args(p, required=False, images=False)
    p.add_argument("--out", default="runs/compare", help="folder for the report, JSON and plots")
    add_detector_args(p)
    p.set_defaults(func=cmd_eval_compare)
