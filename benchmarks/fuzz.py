"""Damaged image files against the API and the command line: only documented errors, no traceback, no hang.

Seed files are the bundled sample, shrunk, encoded as PNG (RGB and grey), JPEG (baseline and
progressive), BMP, TIFF, WebP and GIF. Each input is one seed with one to three mutations drawn
from a seeded generator: bytes flipped (half the time in the first 64, where headers are),
the file cut short, a run of bytes inserted or deleted, or the width/height fields of its
header overwritten with edge values. Every input goes to ``MTCNN.detect`` as bytes and as a
path; the outcome must be detections or a ValueError/TypeError/OSError (what the package
documents). Then ``openmtcnn detect`` runs in-process on a folder of the inputs that the API
read or refused quickly, and must exit 0 or 1 with no traceback.

    nice -n 19 .venv/bin/python benchmarks/fuzz.py --inputs 20000 --out runs/fuzz.json

``tests/test_reliability.py`` runs the same loop for a few seconds.
"""
from __future__ import annotations

import argparse
import contextlib
import io
import json
import struct
import sys
import tempfile
import time
import traceback
from collections import Counter
from pathlib import Path

import cv2
import numpy as np

ASTRONAUT = Path(__file__).resolve().parents[1] / "openmtcnn" / "assets" / "astronaut.png"
DOCUMENTED = (ValueError, TypeError, OSError)  # what detect may raise for an input it cannot use
EDGE_SIZES = (0, 1, 2, 255, 256, 4095, 32767, 32768, 65535, 2**24, 2**31 - 1, 2**32 - 1)


def seed_files(side: int = 64) -> dict[str, bytes]:
    """The sample, shrunk to ``side`` px wide, in every format this OpenCV writes: name -> encoded bytes."""
    bgr = cv2.imread(str(ASTRONAUT), cv2.IMREAD_COLOR)
    small = cv2.resize(bgr, (side, side * 3 // 4), interpolation=cv2.INTER_AREA)
    grey = cv2.cvtColor(small, cv2.COLOR_BGR2GRAY)
    wanted = {"rgb.png": (small, ".png", []), "grey.png": (grey, ".png", []),
              "base.jpg": (small, ".jpg", [cv2.IMWRITE_JPEG_QUALITY, 80]),
              "prog.jpg": (small, ".jpg", [cv2.IMWRITE_JPEG_PROGRESSIVE, 1]), "rgb.bmp": (small, ".bmp", []),
              "rgb.tif": (small, ".tif", []), "rgb.webp": (small, ".webp", []), "rgb.gif": (small, ".gif", [])}
    files = {}
    for name, (image, ext, params) in wanted.items():
        if cv2.haveImageWriter(ext):
            ok, buf = cv2.imencode(ext, image, params)
            if ok:
                files[name] = buf.tobytes()
    return files


def size_fields(data: bytes) -> list[tuple[int, str]]:
    """Offsets and struct formats of the width and height fields that an image's header holds."""
    if data.startswith(b"\x89PNG"):
        return [(16, ">I"), (20, ">I")]
    if data.startswith(b"BM"):
        return [(18, "<i"), (22, "<i")]
    if data.startswith(b"GIF"):
        return [(6, "<H"), (8, "<H")]
    if data.startswith(b"RIFF"):
        return [(26, "<H"), (28, "<H")]
    if data.startswith(b"\xff\xd8"):
        frame = max(data.find(b"\xff\xc0"), data.find(b"\xff\xc2"))
        return [(frame + 5, ">H"), (frame + 7, ">H")] if frame > 0 else []
    return [(k, "<I") for k in range(8, 120, 4)]  # TIFF: somewhere in the first IFD


def mutate(data: bytes, rng: np.random.Generator) -> bytes:
    """One to three random mutations of an encoded image."""
    out = bytearray(data)
    for _ in range(int(rng.integers(1, 4))):
        kind = rng.choice(["flip", "cut", "insert", "delete", "size"])
        if not out:
            break
        if kind == "flip":
            span = min(64, len(out)) if rng.random() < 0.5 else len(out)
            for at in rng.integers(0, span, int(rng.integers(1, 9))):
                out[at] ^= int(rng.integers(1, 256))
        elif kind == "cut":
            del out[int(rng.integers(0, len(out))):]
        elif kind == "insert":
            at = int(rng.integers(0, len(out) + 1))
            out[at:at] = rng.integers(0, 256, int(rng.integers(1, 64)), dtype=np.uint8).tobytes()
        elif kind == "delete":
            at = int(rng.integers(0, len(out)))
            del out[at:at + int(rng.integers(1, 64))]
        else:
            fields = [(at, fmt) for at, fmt in size_fields(bytes(out)) if at + struct.calcsize(fmt) <= len(out)]
            if fields:
                at, fmt = fields[int(rng.integers(len(fields)))]
                bits = 8 * struct.calcsize(fmt)
                value = int(rng.choice(EDGE_SIZES)) % 2**bits
                signed = fmt[-1].islower()
                value = value - 2**bits if signed and value >= 2**(bits - 1) else value
                out[at:at + struct.calcsize(fmt)] = struct.pack(fmt, value)
    return bytes(out)


def outcome(call) -> tuple[str, float]:
    """What ``call()`` did ("faces", a documented error's type name, or "UNEXPECTED ..."), and how long it took."""
    t = time.perf_counter()
    try:
        call()
        result = "faces"
    except DOCUMENTED as e:
        result = type(e).__name__
    except Exception as e:  # noqa: BLE001 - the point is to catch what should not happen
        result = f"UNEXPECTED {type(e).__name__}: {e} | {traceback.format_exc(limit=-3)}"
    return result, time.perf_counter() - t


def fuzz_api(detector, folder: Path, inputs: int, seconds: float, seed: int = 0) -> dict:
    """Mutated seeds to ``detector.detect`` as bytes and as paths (files in ``folder``), ``inputs`` or ``seconds``."""
    rng, seeds = np.random.default_rng(seed), seed_files()
    names = sorted(seeds)
    counts, unexpected, slowest, quick = Counter(), [], 0.0, []
    start, tried = time.perf_counter(), 0
    while tried < inputs and time.perf_counter() - start < seconds:
        name = names[tried % len(names)]
        data = mutate(seeds[name], rng)
        path = folder / f"{tried:06d}_{name}"
        path.write_bytes(data)
        for how, arg in (("bytes", data), ("path", str(path))):
            result, took = outcome(lambda: detector.detect(arg))
            counts[f"{how}: {result.split(' |')[0] if result.startswith('UNEXPECTED') else result}"] += 1
            slowest = max(slowest, took)
            if result.startswith("UNEXPECTED"):
                unexpected.append({"input": path.name, "as": how, "error": result})
        if result != "ImageTooLarge" and took < 1.0:
            quick.append(path)
        else:
            path.unlink()
        tried += 1
    return {"inputs": tried, "calls": 2 * tried, "seconds": round(time.perf_counter() - start, 1),
            "slowest_call_s": round(slowest, 3), "outcomes": dict(sorted(counts.items())),
            "unexpected": unexpected[:20], "unexpected_count": len(unexpected), "cli_files": quick}


def fuzz_cli(folder: Path, json_path: Path) -> dict:
    """``openmtcnn detect FOLDER --json ... --quiet`` in-process: exit code, error lines, tracebacks."""
    from openmtcnn.cli.main import main

    err = io.StringIO()
    t = time.perf_counter()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            code = main(["detect", str(folder), "--json", str(json_path), "--quiet", "--threads", "1"])
        except BaseException as e:  # noqa: BLE001 - an escape is a finding, not a crash of the harness
            code = f"raised {type(e).__name__}: {e}"
    text = err.getvalue()
    return {"exit_code": code, "seconds": round(time.perf_counter() - t, 1), "error_lines": text.count("error:"),
            "traceback": "Traceback" in text, "files_with_faces": len(json.loads(json_path.read_text()))
            if json_path.is_file() else None}


def run(inputs: int, seconds: float, seed: int = 0, cli_limit: int = 1000) -> dict:
    """The API loop, then the CLI on up to ``cli_limit`` of its quick inputs; one summary."""
    from openmtcnn import MTCNN

    detector = MTCNN(threads=1, device="cpu", max_pixels=2**20)  # a 1-Mpx limit keeps each call short
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        (tmp / "all").mkdir()
        api = fuzz_api(detector, tmp / "all", inputs, seconds, seed)
        cli_folder = tmp / "cli"
        cli_folder.mkdir()
        for path in api.pop("cli_files")[:cli_limit]:
            path.rename(cli_folder / path.name)
        cli = {"files": len(list(cli_folder.iterdir())), **fuzz_cli(cli_folder, tmp / "results.json")}
    return {"seed": seed, "api": api, "cli": cli}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--inputs", type=int, default=20000)
    p.add_argument("--seconds", type=float, default=3600, help="stop the API loop after this long")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--cli-files", type=int, default=1000, help="mutated files given to the CLI run")
    p.add_argument("--out", help="JSON file for the counts")
    args = p.parse_args()
    result = run(args.inputs, args.seconds, args.seed, args.cli_files)
    text = json.dumps(result, indent=1)
    print(text)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(text + "\n")
    bad = result["api"]["unexpected_count"] or result["cli"]["traceback"] or result["cli"]["exit_code"] not in (0, 1)
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
