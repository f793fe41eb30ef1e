"""``openmtcnn export c``: the whole cascade as int8 C99 for a microcontroller (or the host)."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from openmtcnn.cli.errors import UsageError, parse_size

ASSET = Path(__file__).resolve().parents[1] / "assets" / "astronaut.png"


def calibration_images(folder: str | None, limit: int) -> list[Path]:
    """Up to ``limit`` photos of a folder (searched recursively, sorted: deterministic); default the sample."""
    if folder is None:
        return [ASSET]
    from openmtcnn.detect.image import folder_images

    try:
        found = folder_images(folder)
    except ValueError as e:
        raise UsageError(f"--calib: {e}") from None
    step = max(1, len(found) // limit)  # spread over the folder (its events), not its first ones
    return found[::step][:limit]


def cmd_export_c(args: argparse.Namespace) -> int:
    import torch

    from openmtcnn.compress.int8_cascade import (
        CascadeConfig,
        load_float_nets,
        quantize_cascade,
        read_frames,
    )
    from openmtcnn.export.c import export_c
    from openmtcnn.models import variant_models
    from openmtcnn.weights import manifest

    torch.set_num_threads(args.threads)
    variant_models(args.variant)  # unknown families fail here with the list
    weights = args.weights or args.variant
    width, height = parse_size(args.input)
    config = CascadeConfig(args.min_face, args.scale_factor, tuple(args.thresholds), level_cap=args.caps[0],
                           proposal_cap=args.caps[1], rnet_cap=args.caps[2], onet_cap=args.caps[3])
    config.check()
    ranges = json.loads(Path(args.ranges).read_text()) if args.ranges else None
    paths = calibration_images(args.calib, args.calib_images)
    frames = read_frames(paths, width, height)
    cascade = quantize_cascade(load_float_nets(weights), frames, config, ranges=ranges, percentile=args.percentile)
    info = {"weights": str(weights), "models": " ".join(manifest(weights)["models"].values()),
            "camera": f"{width}x{height}", "calibration_images": len(frames)}
    s = export_c(cascade, args.out, width, height, args.target, info)
    print(f"wrote {args.out}/ (mtcnn.c/.h, mtcnn_model.c/.h, main.c, mcu_main.c, Makefile, mtcnn_int8.npz)")
    print(f"weights {s['weight_bytes'] / 1024:.1f} KB flash; arena {s['arena_bytes']} B + frame {s['frame_bytes']} B "
          f"+ stack reserve {s['stack_reserve']} B = {s['ram_bytes'] / 1024:.1f} KB RAM"
          + (f" (budget {s['ram_budget'] / 1024:.0f} KB)" if s["ram_budget"] else ""))
    print(f"build: make -C {args.out} {'mcu' if args.target == 'cortex-m4' else 'host'}")
    return 0


def register(groups) -> None:
    """Add ``export c``."""
    p = groups.export.add_parser("c", help="int8 C99 code of the whole cascade for a microcontroller (no malloc)")
    p.add_argument("--variant", default="mcu", help="model family the nets are built like (default mcu)")
    p.add_argument("--weights", help="weight set name or folder (default: the variant's name)")
    p.add_argument("--out", required=True, help="folder for the C sources")
    p.add_argument("--input", default="160x120", help="largest camera frame WxH the arena is sized for")
    p.add_argument("--calib", help="folder of calibration photos (default: the bundled sample)")
    p.add_argument("--calib-images", type=int, default=64, help="calibration photos used at most (default 64)")
    p.add_argument("--percentile", type=float, default=99.99, help="activation range percentile (default 99.99)")
    p.add_argument("--ranges", help="JSON {stage: {layer: max}} activation ranges (e.g. from QAT), skip calibration")
    p.add_argument("--target", default="host", choices=["host", "cortex-m4"],
                   help="cortex-m4: check 128 KB RAM / 1 MB flash and make `make mcu` the default")
    p.add_argument("--min-face", type=float, default=20, help="smallest face in pixels (default 20)")
    p.add_argument("--scale-factor", type=float, default=0.709)
    p.add_argument("--thresholds", type=float, nargs=3, default=(0.6, 0.7, 0.7), metavar=("P", "R", "O"))
    p.add_argument("--caps", type=int, nargs=4, default=(256, 128, 128, 32), metavar=("LEVEL", "PROPOSALS", "RNET", "ONET"),
                   help="candidate caps: P-Net per level, P-Net total, R-Net crops, O-Net crops (default 256 128 128 32)")
    p.add_argument("--threads", type=int, default=1, help="CPU threads for calibration (default 1)")
    p.set_defaults(func=cmd_export_c)
