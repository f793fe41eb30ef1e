"""Options several commands share: the detector's settings, and the detector they describe."""
from __future__ import annotations

import argparse


def add_detector_args(p: argparse.ArgumentParser, threads: bool = True, min_face: float = 20,
                      thresholds: tuple[float, float, float] = (0.6, 0.7, 0.7)) -> None:
    """Add the detector's options (--min-face, --thresholds, --weights, ...); ``threads=False`` leaves --threads out."""
    p.add_argument("--min-face", type=float, default=min_face,
                   help=f"smallest face to find, in pixels (default {min_face:g})")
    p.add_argument("--scale-factor", type=float, default=0.709, help="image pyramid factor (default 0.709)")
    shown = " ".join(f"{t:g}" for t in thresholds)
    p.add_argument("--thresholds", type=float, nargs=3, default=tuple(thresholds), metavar=("P", "R", "O"),
                   help=f"P-Net, R-Net, O-Net face probability thresholds (default {shown})")
    p.add_argument("--weights", default="published", help="weight set name or folder (default: published)")
    if threads:
        p.add_argument("--threads", type=int, default=None, help="CPU threads for the nets (default: all)")
    p.add_argument("--device", default="auto", choices=["cpu", "cuda", "auto"],
                   help="where the nets run (default auto: a CUDA GPU when present, else the CPU)")


def make_detector(args: argparse.Namespace):
    """The MTCNN that add_detector_args' options describe."""
    from openmtcnn import MTCNN

    return MTCNN(min_face_size=args.min_face, scale_factor=args.scale_factor, thresholds=args.thresholds,
                 weights=args.weights, threads=args.threads, device=args.device)


def detector_settings(args: argparse.Namespace) -> dict:
    """The detector settings an evaluation records beside its results."""
    return {"min_face": args.min_face, "scale_factor": args.scale_factor, "thresholds": list(args.thresholds),
            "weights": args.weights}
