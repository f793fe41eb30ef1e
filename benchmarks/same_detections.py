"""Are two versions' detections the same, bit for bit? Detect with each, then compare.

    python benchmarks/same_detections.py detect --images ../shared/data/widerface/WIDER_val/images \
        --weights published published-int8 lite mcu --out runs/det_new.npz
    git worktree add /tmp/old COMMIT && PYTHONPATH=/tmp/old python benchmarks/same_detections.py detect … \
        --out runs/det_old.npz
    python benchmarks/same_detections.py compare runs/det_old.npz runs/det_new.npz

Uses only ``MTCNN(weights=…).detect(list)``, which every version has, so the same script runs on
an older checkout. ``compare`` prints, per weight set, the images whose boxes, scores or
landmarks differ in any bit, and exits 1 when any does.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np


def cmd_detect(args: argparse.Namespace) -> None:
    import openmtcnn
    from openmtcnn import MTCNN

    files = sorted(p for p in Path(args.images).rglob("*.jpg"))[:args.limit]
    arrays = {}
    for name in args.weights:
        found = MTCNN(weights=name, threads=args.threads, device="cpu").detect([str(f) for f in files])
        for f, d in zip(files, found):
            key = f"{name}/{f.relative_to(args.images)}"
            arrays[key + "/boxes"], arrays[key + "/scores"], arrays[key + "/landmarks"] = d.boxes, d.scores, d.landmarks
        print(f"{name}: {len(files)} images, {sum(len(d.boxes) for d in found)} faces", flush=True)
    np.savez(args.out, **arrays)
    print(f"{args.out} (openmtcnn from {Path(openmtcnn.__file__).parent})")


def cmd_compare(args: argparse.Namespace) -> None:
    with np.load(args.a) as a, np.load(args.b) as b:
        if set(a.files) != set(b.files):
            sys.exit(f"different images or weight sets: {sorted(set(a.files) ^ set(b.files))[:5]}")
        differ = sorted({k.rsplit("/", 1)[0] for k in a.files if not np.array_equal(a[k], b[k])})
        sets = sorted({k.split("/", 1)[0] for k in a.files})
        for name in sets:
            images = len({k.rsplit("/", 1)[0] for k in a.files if k.startswith(name + "/")})
            bad = [k for k in differ if k.startswith(name + "/")]
            print(f"{name}: {images} images, {len(bad)} differ" + (f" (e.g. {bad[0]})" if bad else ""))
    sys.exit(1 if differ else 0)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True)
    s = sub.add_parser("detect")
    s.add_argument("--images", required=True)
    s.add_argument("--weights", nargs="+", default=["published"])
    s.add_argument("--limit", type=int, help="only the first N images (sorted)")
    s.add_argument("--threads", type=int, default=2)
    s.add_argument("--out", required=True)
    s.set_defaults(func=cmd_detect)
    s = sub.add_parser("compare")
    s.add_argument("a")
    s.add_argument("b")
    s.set_defaults(func=cmd_compare)
    args = p.parse_args()
    args.func(args)


if __name__ == "__main__":
    main()
