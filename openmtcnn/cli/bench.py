"""``openmtcnn bench``: latency, end to end and per stage, optionally next to YuNet."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from openmtcnn.cli.errors import parse_size
from openmtcnn.cli.options import add_detector_args, make_detector

SAMPLE = Path(__file__).resolve().parents[1] / "assets" / "astronaut.png"


def cmd_bench(args: argparse.Namespace) -> int:
    """Time the detector (and YuNet) at each thread count; print a table, optionally write JSON."""
    import cv2

    from openmtcnn.detect.image import to_rgb
    from openmtcnn.evaluate.speed import bench_mtcnn, bench_yunet, fit_frame, format_table
    from openmtcnn.fileio import atomic_write_bytes

    width, height = parse_size(args.size)
    frame = fit_frame(to_rgb(args.image), width, height)
    rows = []
    for threads in args.threads:
        cv2.setNumThreads(threads)
        detector = make_detector(argparse.Namespace(**{**vars(args), "threads": threads}))
        row = {"name": f"openmtcnn t{threads}", "threads": threads, "workers": detector.workers,
               **bench_mtcnn(detector, frame, args.warmup, args.repeats)}
        if args.yunet:
            y = bench_yunet(args.yunet, frame, args.warmup, args.repeats)
            row["ratio_to_yunet"] = round(row["median_ms"] / y["median_ms"], 2)
            rows.append(row)
            row = {"name": f"yunet t{threads}", "threads": threads, **y}
        rows.append(row)
    print(f"{args.image} at {width}x{height}, min face {args.min_face}, {args.repeats} runs each")
    print(format_table(rows))
    if args.json:
        report = {"image": str(args.image), "size": [width, height], "min_face": args.min_face,
                  "thresholds": list(args.thresholds), "repeats": args.repeats, "results": rows}
        atomic_write_bytes(args.json, (json.dumps(report, indent=1) + "\n").encode())
    return 0


def register(groups) -> None:
    """Add ``bench``; its --threads takes several counts, so the detector options come without it."""
    p = groups.top.add_parser("bench", help="latency, end to end and per stage (optionally next to YuNet)")
    p.add_argument("--image", default=str(SAMPLE), help="photo to time on (default: the bundled sample)")
    p.add_argument("--size", default="640x480", help="frame size WxH the photo is fitted to (default 640x480)")
    p.add_argument("--repeats", type=int, default=20, help="timed runs (default 20)")
    p.add_argument("--warmup", type=int, default=3, help="untimed runs first (default 3)")
    p.add_argument("--yunet", help="YuNet .onnx to time on the same frame as a yardstick")
    p.add_argument("--json", help="write the results to this JSON file")
    add_detector_args(p, threads=False)
    p.add_argument("--threads", type=int, nargs="+", default=[1, 2], help="thread counts to time (default 1 2)")
    p.set_defaults(func=cmd_bench)
