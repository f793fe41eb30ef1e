"""``openmtcnn eval landmarks``: five-point landmark error (NME, failure rate, CED) on an annotated list."""
from __future__ import annotations

import argparse
from pathlib import Path

from openmtcnn.cli.errors import UsageError, report_unreadable
from openmtcnn.cli.options import add_detector_args, detector_settings, make_detector


def register(groups) -> None:
    """Add ``eval landmarks``."""
    p = groups.eval.add_parser("landmarks", help="five-point landmark NME, failure rate and CED "
                                                 "(CNN_FacePoint or plain lists)")
    p.add_argument("--list", required=True, help="annotation list, e.g. cnn_facepoint/testImageList.txt")
    p.add_argument("--images", required=True, help="folder the list's image paths are relative to")
    p.add_argument("--format", choices=["cnn", "plain"], default=None,
                   help="cnn: path left right top bottom x1 y1 ... x5 y5; plain: path x1 y1 ... x5 y5 "
                        "(default: from the number of fields)")
    p.add_argument("--out", default="runs/landmarks", help="folder for results.json and ced.png")
    add_detector_args(p)
    p.set_defaults(func=cmd_eval_landmarks)


def cmd_eval_landmarks(args: argparse.Namespace) -> int:
    """Run the evaluation; exit code 1 when some images could not be read (their faces count as missed)."""
    from openmtcnn.evaluate.landmarks import run_landmarks, summary

    if not Path(args.list).is_file():
        raise UsageError(f"--list file not found: {args.list}")
    if not Path(args.images).is_dir():
        raise UsageError(f"--images folder not found: {args.images}")
    settings = detector_settings(args)
    results = run_landmarks(make_detector(args), args.list, args.images, args.out, fmt=args.format,
                            settings=settings)
    print(summary(results))
    print(f"results in {args.out}/ (results.json, ced.png)")
    return report_unreadable(results["failed"]["images"], "image", results["images"])
