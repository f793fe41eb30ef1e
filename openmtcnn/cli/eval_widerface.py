"""``openmtcnn eval widerface``: WIDER FACE val AP (easy/medium/hard) with the official protocol."""
from __future__ import annotations

import argparse
from pathlib import Path

from openmtcnn.cli.errors import UsageError, report_unreadable
from openmtcnn.cli.options import add_detector_args, detector_settings, make_detector


def cmd_eval_widerface(args: argparse.Namespace) -> int:
    """Check the folders, evaluate, save; exit code 1 when some images could not be read."""
    from openmtcnn.evaluate.report import save_widerface
    from openmtcnn.evaluate.widerface import run_widerface

    for name in ("images", "gt"):
        if not Path(getattr(args, name)).is_dir():
            raise UsageError(f"--{name} folder not found: {getattr(args, name)}")
    results = run_widerface(make_detector(args), args.images, args.gt, args.out, stages=args.stages)
    settings = detector_settings(args)
    print(save_widerface(results, settings, args.out))
    return report_unreadable(results["failed"]["images"], "image", results["images"])


def register(groups) -> None:
    """Add ``eval widerface``."""
    p = groups.eval.add_parser("widerface", help="WIDER FACE val AP (easy/medium/hard), official protocol")
    p.add_argument("--images", required=True, help="WIDER_val/images folder")
    p.add_argument("--gt", required=True, help="eval_tools/ground_truth folder (the .mat files)")
    p.add_argument("--out", default="runs/widerface", help="folder for predictions, JSON and plots")
    p.add_argument("--stages", action="store_true",
                   help="also count where each face is lost (P-Net, R-Net, O-Net, final NMS) per face size")
    add_detector_args(p)
    p.set_defaults(func=cmd_eval_widerface)
