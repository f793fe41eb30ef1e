"""Soak: many detections on one detector, resident memory sampled as they go; does it grow?

The pictures are the first ``--photos`` WIDER FACE val photos (sorted paths) fitted to ``--side``
px on their long side, and the bundled sample at 128, 256 and 512 px (the sample alone when the
data is absent). Calls cycle through them; every fourth call passes the picture JPEG-encoded
(the decoder is soaked too), the others as an RGB array. VmRSS is read every ``--every`` calls;
the growth is from call ``--every`` (after warm-up) to the end.

    nice -n 19 .venv/bin/python benchmarks/soak.py --calls 10000 --out runs/soak.json
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import cv2
import numpy as np

ASTRONAUT = Path(__file__).resolve().parents[1] / "openmtcnn" / "assets" / "astronaut.png"
VAL = "widerface/WIDER_val/images"


def fit(bgr: np.ndarray, side: int) -> np.ndarray:
    """``bgr`` scaled (INTER_AREA) so that its long side is ``side`` px, as RGB."""
    scale = side / max(bgr.shape[:2])
    small = cv2.resize(bgr, (max(1, round(bgr.shape[1] * scale)), max(1, round(bgr.shape[0] * scale))),
                       interpolation=cv2.INTER_AREA)
    return cv2.cvtColor(small, cv2.COLOR_BGR2RGB)


def pictures(data: Path, photos: int, side: int) -> tuple[list[np.ndarray], str]:
    """The soak's pictures as RGB arrays, and where they came from."""
    sample = cv2.imread(str(ASTRONAUT), cv2.IMREAD_COLOR)
    out = [fit(sample, s) for s in (128, 256, 512)]
    files = sorted((data / VAL).rglob("*.jpg"))[:photos]
    out += [fit(cv2.imread(str(f), cv2.IMREAD_COLOR), side) for f in files]
    return out, f"{len(files)} WIDER val photos at {side} px + the sample at 128/256/512 px"


def vm_rss_mb() -> float:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS:")) / 1024


def soak(detector, images: list[np.ndarray], calls: int, every: int) -> dict:
    """``calls`` detections cycling through ``images`` (every fourth as JPEG bytes), RSS every ``every`` calls."""
    encoded = [cv2.imencode(".jpg", cv2.cvtColor(im, cv2.COLOR_RGB2BGR))[1].tobytes() for im in images]
    samples, faces, start = [], 0, time.perf_counter()
    for call in range(1, calls + 1):
        k = (call - 1) % len(images)
        faces += len(detector.detect(encoded[k] if call % 4 == 0 else images[k]).boxes)
        if call % every == 0 or call == calls:
            seconds = round(time.perf_counter() - start, 1)
            samples.append({"call": call, "rss_mb": round(vm_rss_mb(), 1), "seconds": seconds})
    first = samples[0]["rss_mb"]
    return {"calls": calls, "faces": faces, "seconds": samples[-1]["seconds"],
            "ms_per_call": round(1000 * samples[-1]["seconds"] / calls, 2), "rss_first_sample_mb": first,
            "first_sample_call": samples[0]["call"], "rss_end_mb": samples[-1]["rss_mb"],
            "growth_pct": round(100 * (samples[-1]["rss_mb"] - first) / first, 2), "samples": samples}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--calls", type=int, default=10000)
    p.add_argument("--every", type=int, default=500, help="calls between RSS samples")
    p.add_argument("--photos", type=int, default=64)
    p.add_argument("--side", type=int, default=400, help="long side of the photos, px")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--data", default=os.environ.get("OPENMTCNN_DATA", "../shared/data"))
    p.add_argument("--out", help="JSON file for the result")
    args = p.parse_args()
    from openmtcnn import MTCNN

    images, source = pictures(Path(args.data), args.photos, args.side)
    detector = MTCNN(threads=args.threads, device="cpu")
    result = {"pictures": source, "threads": args.threads,
              "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs",
              **soak(detector, images, args.calls, args.every)}
    print(json.dumps({k: v for k, v in result.items() if k != "samples"}, indent=1))
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
