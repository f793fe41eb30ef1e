"""``openmtcnn export ncnn``: a weight set's nets as ncnn float and int8 .param/.bin (mobile deployment)."""
from __future__ import annotations

import argparse
from pathlib import Path

from openmtcnn.cli.errors import UsageError


def cmd_export_ncnn(args: argparse.Namespace) -> int:
    from openmtcnn.cli.export_c import calibration_images
    from openmtcnn.cli.quantize import command_line
    from openmtcnn.export.ncnn import NcnnExportConfig, export_ncnn

    if args.calib_images < 1:
        raise UsageError(f"--calib-images must be at least 1, got {args.calib_images}")
    calib = calibration_images(args.calib, args.calib_images)
    command = command_line("openmtcnn export ncnn", args, ["weights", "out"] + (
        ["no_int8"] if args.no_int8 else ["calib", "calib_images", "threads"]))
    cfg = NcnnExportConfig(weights=args.weights, out=args.out, int8=not args.no_int8, calib=calib,
                           threads=args.threads, command=command, show_progress=not args.quiet)
    out = export_ncnn(cfg)
    print(f"wrote {out}/ (pnet, rnet, onet .param/.bin, float32, manifest.json)")
    use = f"MTCNN(weights={str(out)!r})"
    if cfg.int8:
        print(f"wrote {out / 'int8'}/ (int8, calibrated on {len(calib)} image{'s' if len(calib) != 1 else ''})")
        use += f" or weights={str(Path(out) / 'int8')!r}"
    print(f"use: {use}; in an app: input blob in0 (RGB, (x - 127.5) * 0.0078125), outputs out0 face probability, "
          "out1 box offsets, out2 landmarks")
    return 0


def register(groups) -> None:
    """Add ``export ncnn``."""
    p = groups.export.add_parser("ncnn", help="ncnn .param/.bin of a weight set, float and int8 (via pnnx)")
    p.add_argument("--weights", default="published", help="weight set name or folder (default: published)")
    p.add_argument("--out", required=True, help="folder for the float nets; the int8 ones go to OUT/int8")
    p.add_argument("--calib", help="folder of int8 calibration photos (default: the bundled sample)")
    p.add_argument("--calib-images", type=int, default=100, help="calibration photos used at most (default 100)")
    p.add_argument("--no-int8", action="store_true", help="float nets only")
    p.add_argument("--threads", type=int, default=1, help="CPU threads for the calibration cascade (default 1)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_export_ncnn)
