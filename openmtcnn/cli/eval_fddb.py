"""The ``openmtcnn eval fddb`` sub-command: FDDB ROC (discrete and continuous) of the detector."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Callable

from openmtcnn.cli.errors import UsageError


def cmd_eval_fddb(args: argparse.Namespace, make_detector: Callable[[argparse.Namespace], object]) -> int:
    """Check the folders, run the evaluation, print a summary; exit code 1 if any image failed."""
    from openmtcnn.evaluate.fddb import run_fddb, summary

    for name in ("images", "folds"):
        if not Path(getattr(args, name)).is_dir():
            raise UsageError(f"--{name} folder not found: {getattr(args, name)}")
    settings = {"min_face": args.min_face, "scale_factor": args.scale_factor,
                "thresholds": list(args.thresholds), "weights": args.weights}
    results = run_fddb(make_detector(args), args.images, args.folds, args.out,
                       ellipse_fit=args.ellipse_fit, settings=settings)
    print(summary(results, args.out))
    for f in results["failed"]:
        print(f"error: {f['name']}: {f['error']}", file=sys.stderr)
    return 1 if results["failed"] else 0


def register(eval_subparsers, add_detector_args: Callable, make_detector: Callable) -> argparse.ArgumentParser:
    """Add ``fddb`` to the ``eval`` sub-commands; main.py passes its own helpers (no import cycle)."""
    p = eval_subparsers.add_parser("fddb", help="FDDB ROC (discrete and continuous), official protocol")
    p.add_argument("--images", required=True, help="folder holding <name>.jpg (FDDB originalPics)")
    p.add_argument("--folds", required=True, help="FDDB-folds folder (FDDB-fold-XX-ellipseList.txt; "
                                                  "the folds present are used)")
    p.add_argument("--out", default="runs/fddb", help="folder for fold-XX-out.txt, JSON and plot")
    p.add_argument("--ellipse-fit", action="store_true",
                   help="compare the ellipse inscribed in each box grown 20%% upward (a convention) "
                        "instead of the box itself")
    add_detector_args(p)
    p.set_defaults(func=lambda args: cmd_eval_fddb(args, make_detector))
    return p
