"""``openmtcnn eval landmarks``: five-point landmark error (NME, failure rate, CED) on an annotated list."""
from __future__ import annotations

import argparse
import functools
from pathlib import Path
from typing import Callable

from openmtcnn.cli.errors import report_unreadable


def register(eval_subparsers, add_detector_args: Callable, make_detector: Callable) -> argparse.ArgumentParser:
    """Add the ``landmarks`` dataset to the ``eval`` subcommand; return its parser."""
    p = eval_subparsers.add_parser("landmarks", help="five-point landmark NME, failure rate and CED "
                                                     "(CNN_FacePoint or plain lists)")
    p.add_argument("--list", required=True, help="annotation list, e.g. cnn_facepoint/testImageList.txt")
    p.add_argument("--images", required=True, help="folder the list's image paths are relative to")
    p.add_argument("--format", choices=["cnn", "plain"], default=None,
                   help="cnn: path left right top bottom x1 y1 ... x5 y5; plain: path x1 y1 ... x5 y5 "
                        "(default: from the number of fields)")
    p.add_argument("--out", default="runs/landmarks", help="folder for results.json and ced.png")
    add_detector_args(p)
    p.set_defaults(func=functools.partial(cmd_eval_landmarks, make_detector=make_detector))
    return p


def cmd_eval_landmarks(args: argparse.Namespace, make_detector: Callable) -> int:
    """Run the evaluation; exit code 1 when some images could not be read (they are skipped)."""
    from openmtcnn.cli.errors import UsageError
    from openmtcnn.evaluate.landmarks import run_landmarks, summary

    if not Path(args.list).is_file():
        raise UsageError(f"--list file not found: {args.list}")
    if not Path(args.images).is_dir():
        raise UsageError(f"--images folder not found: {args.images}")
    settings = {"min_face": args.min_face, "scale_factor": args.scale_factor,
                "thresholds": list(args.thresholds), "weights": args.weights}
    results = run_landmarks(make_detector(args), args.list, args.images, args.out, fmt=args.format,
                            settings=settings)
    print(summary(results))
    print(f"results in {args.out}/ (results.json, ced.png)")
    return report_unreadable(results["unreadable_images"], "path", results["images"])
