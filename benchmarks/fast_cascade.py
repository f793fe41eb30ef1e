"""The `fast` cascade's P-Net, step by step: a cheaper net distilled from the published P-Net, then
made selective by training it again with its own false alarms as hard negatives.

    python benchmarks/fast_cascade.py --wider /tmp/wider --out runs/fast       # every step resumes
    python benchmarks/variant_table.py published runs/fast/weights_p0 runs/fast/weights_p \\
        --data ../shared/data --out runs/fast/variants                          # crops a frame, AP, latency

``weights_p0`` and ``weights_p`` are the P-Net before and after the hard negatives, each with the
published R-Net and O-Net, so that the table shows what the P-Net alone changes: the R-Net crops a
VGA frame (the published P-Net passes about 264) and AP. The WIDER root must hold train pictures
only (e.g. the assembled 3,556): the val pictures are the test.
"""
from __future__ import annotations

import argparse

from learning_curve import LANDMARKS, run_steps

# {W}: WIDER root, {L}: CNN_FacePoint root, {R}: run folder.
RECIPE = [
    "data pnet --wider {W} --landmarks {L} --out {R}/samples",
    "train pnet --model pnet-fast --data {R}/samples/12 --out {R}/pnet0 --epochs 30 --threads 2 --teacher published",
    "export trained {R} --use pnet={R}/pnet0/best.pt --out {R}/weights_p0",
    # P-Net's candidates on the training pictures, labelled by IoU: its false alarms become negatives
    "data pnet --weights {R}/weights_p0 --wider {W} --out {R}/hard --neg-ratio 10",
    "train pnet --model pnet-fast --init {R}/pnet0/best.pt --data {R}/samples/12 {R}/hard/12 --out {R}/pnet "
    "--epochs 10 --threads 2 --teacher published --mix 4 1 1 2",
    "export trained {R} --use pnet={R}/pnet/best.pt --out {R}/weights_p",
]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--wider", required=True, help="WIDER root of train pictures (e.g. the assembled 3,556)")
    p.add_argument("--landmarks", default=LANDMARKS)
    p.add_argument("--out", required=True)
    args = p.parse_args()
    run_steps([step.format(W=args.wider, L=args.landmarks, R=args.out) for step in RECIPE], args.out)


if __name__ == "__main__":
    main()
