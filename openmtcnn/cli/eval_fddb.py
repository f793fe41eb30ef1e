"""The ``openmtcnn eval fddb`` sub-command: FDDB ROC (discrete and continuous) of the detector."""
from __future__ import annotations

import argparse
from pathlib import Path

from openmtcnn.cli.errors import UsageError, report_unreadable
from openmtcnn.cli.options import add_detector_args, detector_settings, make_detector


def cmd_eval_fddb(args: argparse.Namespace) -> int:
    """Check the folders, run the evaluation, print a summary; exit code 1 if any image could not be read."""
    from openmtcnn.evaluate.fddb import run_fddb, summary

    for name in ("images", "folds"):
        if not Path(getattr(args, name)).is_dir():
            raise UsageError(f"--{name} folder not found: {getattr(args, name)}")
    settings = detector_settings(args)
    results = run_fddb(make_detector(args), args.images, args.folds, args.out,
                       ellipse_fit=args.ellipse_fit, settings=settings)
    print(summary(results, args.out))
    return report_unreadable(results["failed"]["images"], "image", results["images"])


def register(groups) -> None:
    """Add ``eval fddb``."""
    p = groups.eval.add_parser("fddb", help="FDDB ROC (discrete and continuous), official protocol")
    p.add_argument("--images", required=True, help="folder holding <name>.jpg (FDDB originalPics)")
    p.add_argument("--folds", required=True, help="FDDB-folds folder (FDDB-fold-XX-ellipseList.txt; "
                                                  "the folds present are used)")
    p.add_argument("--out", default="runs/fddb", help="folder for fold-XX-out.txt, JSON and plot")
    p.add_argument("--ellipse-fit", action="store_true",
                   help="compare the ellipse inscribed in each box grown 20%% upward (a convention) "
                        "instead of the box itself")
    add_detector_args(p)
    p.set_defaults(func=cmd_eval_fddb)
