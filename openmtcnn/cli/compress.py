"""``openmtcnn compress memory``: what a variant costs in flash, RAM and MACs."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from openmtcnn.cli.errors import parse_size


def cmd_memory(args: argparse.Namespace) -> int:
    from openmtcnn.compress.memory import estimate, format_estimate
    from openmtcnn.models import variant_models

    variant_models(args.variant)  # unknown names fail here with the list of variants
    w, h = parse_size(args.size)
    cands = {"rnet": args.rnet_crops, "onet": args.onet_crops}
    e = estimate(args.variant, w, h, args.min_face_size, candidates={k: v for k, v in cands.items() if v})
    print(format_estimate(e))
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(e, indent=1) + "\n")
    return 0


def register(groups) -> None:
    """Add ``compress memory``."""
    p = groups.compress.add_parser("memory", help="parameters, int8/float32 bytes, peak RAM and MACs of a variant")
    p.add_argument("variant", help="model family: published, paper, lite, large-pnet, mcu")
    p.add_argument("--size", default="640x480", help="camera frame WxH (default 640x480)")
    p.add_argument("--min-face-size", type=float, default=20)
    p.add_argument("--rnet-crops", type=int, help="R-Net crops per frame to assume (default 300)")
    p.add_argument("--onet-crops", type=int, help="O-Net crops per frame to assume (default 40)")
    p.add_argument("--json", help="also write the estimate here")
    p.set_defaults(func=cmd_memory)
