"""``openmtcnn convert``: the authors' published weights (npy) as a weight set."""
from __future__ import annotations

import argparse
from pathlib import Path

from openmtcnn.cli.errors import UsageError


def cmd_convert(args: argparse.Namespace) -> int:
    """Convert the npy folder and print where the weight set went."""
    from openmtcnn.export.convert import convert_published

    if not Path(args.src).is_dir():
        raise UsageError(f"source folder not found: {args.src}")
    print(f"wrote {convert_published(args.src, args.out)}")
    return 0


def register(groups) -> None:
    """Add ``convert``."""
    p = groups.top.add_parser("convert", help="convert the authors' published weights (npy) to a weight set")
    p.add_argument("src", help="folder with det1.npy, det2.npy, det3.npy (or an npy/ subfolder)")
    p.add_argument("--out", default="openmtcnn/weights/published", help="weight set folder to write")
    p.set_defaults(func=cmd_convert)
