"""Peak memory and time of detecting faces in very large photos, each in a fresh process.

Photos are made from the bundled sample: the astronaut tiled 6 x 4 and resized to the target size
(4:3, INTER_LINEAR), written as JPEG (quality 90) and cached in ``--work``. Each photo is detected
by path in its own subprocess with ``MTCNN(threads=T)`` (default pixel limit), which reports its
VmRSS after loading the nets, the wall time of ``detect(path)`` and its peak RSS (``ru_maxrss``).
A photo over the pixel limit (400 Mpx by default) is refused from its JPEG header: the time and
peak RSS of that refusal are recorded instead.

    nice -n 19 .venv/bin/python benchmarks/big_photos.py --out runs/big_photos.json
    mkdir /tmp/old && git archive COMMIT openmtcnn | tar -x -C /tmp/old
    PYTHONPATH=/tmp/old nice -n 19 .venv/bin/python benchmarks/big_photos.py --out runs/big_photos_old.json

With an editable install its import hook finds this checkout before PYTHONPATH: the old copy
then needs a ``/tmp/old/sitecustomize.py`` that drops it, ``sys.meta_path[:] = [f for f in
sys.meta_path if "editable" not in type(f).__module__ + repr(f)]``.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

ASTRONAUT = Path(__file__).resolve().parents[1] / "openmtcnn" / "assets" / "astronaut.png"
TILES = (6, 4)  # columns, rows of sample pictures in a photo


def photo_size(megapixels: float) -> tuple[int, int]:
    """Width and height of a 4:3 photo of about ``megapixels`` million pixels."""
    height = round(math.sqrt(megapixels * 1e6 * 3 / 4))
    return round(height * 4 / 3), height


def make_photo(path: Path, megapixels: float) -> None:
    """Write the tiled sample at ``megapixels`` as a JPEG (in a subprocess: a 400-Mpx array is 1.2 GB)."""
    import cv2
    import numpy as np

    width, height = photo_size(megapixels)
    tiles = np.tile(cv2.imread(str(ASTRONAUT), cv2.IMREAD_COLOR), (TILES[1], TILES[0], 1))
    big = cv2.resize(tiles, (width, height), interpolation=cv2.INTER_LINEAR)
    if not cv2.imwrite(str(path), big, [cv2.IMWRITE_JPEG_QUALITY, 90]):
        raise SystemExit(f"could not write {path}")


def vm_rss_mb() -> float:
    """This process's resident set size now, in MiB (Linux)."""
    with open("/proc/self/status") as f:
        kb = next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))
    return kb / 1024


def child(path: str, threads: int) -> dict:
    """Detect in ``path`` once: RSS after loading, wall time, faces or the error, peak RSS."""
    from openmtcnn import MTCNN

    detector = MTCNN(threads=threads, device="cpu")
    loaded = vm_rss_mb()
    t = time.perf_counter()
    try:
        found = detector.detect(path)
        outcome = {"faces": int(len(found.boxes))}
    except ValueError as e:
        outcome = {"error": type(e).__name__, "message": str(e)[:200]}
    seconds = time.perf_counter() - t
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {**outcome, "seconds": round(seconds, 3), "rss_after_load_mb": round(loaded, 1),
            "peak_rss_mb": round(peak, 1)}


def measure(path: Path, threads: int) -> dict:
    """``child`` in a fresh interpreter, so that its peak RSS is this photo's alone."""
    out = subprocess.run([sys.executable, __file__, "--child", str(path), "--threads", str(threads)],
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--megapixels", type=float, nargs="+", default=[12, 24, 100, 400])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--work", default="runs/big_photos", help="folder for the generated JPEGs (kept between runs)")
    p.add_argument("--out", help="JSON file for the results")
    p.add_argument("--child", help=argparse.SUPPRESS)
    p.add_argument("--make", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.threads)))
        return
    if args.make:
        make_photo(Path(args.make), args.megapixels[0])
        return
    import openmtcnn

    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    rows = []
    for mp in args.megapixels:
        width, height = photo_size(mp)
        path = work / f"tiled_{width}x{height}.jpg"
        if not path.exists():
            subprocess.run([sys.executable, __file__, "--make", str(path), "--megapixels", str(mp)], check=True)
        row = {"megapixels": round(width * height / 1e6, 1), "width": width, "height": height,
               "file_mb": round(path.stat().st_size / 2**20, 1), **measure(path, args.threads)}
        print(json.dumps(row), flush=True)
        rows.append(row)
    result = {"openmtcnn": str(Path(openmtcnn.__file__).parent), "threads": args.threads,
              "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs", "photos": rows}
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
        print(args.out)


if __name__ == "__main__":
    main()
