"""``openmtcnn bench``: latency, end to end and per stage, optionally next to YuNet; or per net and engine."""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Callable

from openmtcnn.cli.errors import UsageError, parse_size
from openmtcnn.cli.options import add_detector_args, make_detector

SAMPLE = Path(__file__).resolve().parents[1] / "assets" / "astronaut.png"
PER_NET_BACKENDS = ("onnx", "ncnn", "ncnn-int8")


def per_net_nets(weights: str, backend: str, threads: int, int8_folder: Callable[[str], Path]) -> dict:
    """{stage: net} of a weight set on one engine: ONNX Runtime, or ncnn float, or ncnn int8 from
    ``int8_folder(float set)``."""
    if backend == "onnx":
        from openmtcnn.runtime.onnx import OrtNet
        from openmtcnn.weights import STAGES, onnx_path

        return {s: OrtNet(onnx_path(weights, s), threads=threads, device="cpu", stage=s) for s in STAGES}
    from openmtcnn.export.ncnn import float_set
    from openmtcnn.runtime.ncnn import ncnn_nets

    source = float_set(weights)
    return ncnn_nets(source if backend == "ncnn" else int8_folder(source), threads=threads)


def cmd_per_net(args: argparse.Namespace, frame) -> int:
    """The per-net table: each weight set's nets on each engine and thread count; markdown, optionally JSON."""
    import tempfile

    from openmtcnn.cli.export_c import calibration_images
    from openmtcnn.evaluate.per_net import PerNetConfig, markdown, net_inputs, time_nets
    from openmtcnn.export.ncnn import quantise_folder
    from openmtcnn.fileio import write_json
    from openmtcnn.runtime.ncnn import ncnn_folder

    cfg = PerNetConfig(min_face=args.min_face, warmup=args.warmup, repeats=args.repeats)
    cases, rows = net_inputs(frame, cfg), []
    calib = calibration_images(args.calib, 100)
    with tempfile.TemporaryDirectory(prefix="openmtcnn-bench-") as tmp:
        made: dict[str, Path] = {}

        def int8_folder(source: str) -> Path:  # quantised once per float set, for this run only
            if source not in made:
                made[source] = quantise_folder(ncnn_folder(source), Path(tmp) / f"int8-{len(made)}", source, calib,
                                               show_progress=False)
            return made[source]

        for weights in args.per_net or [args.weights]:
            for backend in args.backends:
                for threads in args.threads:
                    nets = per_net_nets(weights, backend, threads, int8_folder)
                    rows += [{"weights": weights, "backend": backend, "threads": threads, **r}
                             for r in time_nets(nets, cases, cfg)]
    print(f"{args.image} at {frame.shape[1]}x{frame.shape[0]}, min face {args.min_face}, {args.repeats} runs each "
          f"after {args.warmup}; ncnn-int8 calibrated on {len(calib)} image(s)")
    print(markdown(rows))
    if args.json:
        report = {"image": str(args.image), "size": [frame.shape[1], frame.shape[0]], "min_face": args.min_face,
                  "repeats": args.repeats, "warmup": args.warmup, "calibration_images": len(calib), "per_net": rows}
        write_json(args.json, report)
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    """Time the detector (and YuNet) at each thread count; print a table, optionally write JSON."""
    import cv2

    from openmtcnn.detect.image import to_rgb
    from openmtcnn.evaluate.speed import bench_mtcnn, bench_yunet, fit_frame, format_table
    from openmtcnn.fileio import write_json

    width, height = parse_size(args.size)
    frame = fit_frame(to_rgb(args.image), width, height)
    if args.repeats < 1 or args.warmup < 0:
        raise UsageError("--repeats must be at least 1 and --warmup at least 0")
    if args.per_net is not None:
        return cmd_per_net(args, frame)
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
        write_json(args.json, report)
    return 0


def register(groups) -> None:
    """Add ``bench``; its --threads takes several counts, so the detector options come without it."""
    p = groups.top.add_parser("bench", help="latency: end to end and per stage (next to YuNet), or per net")
    p.add_argument("--image", default=str(SAMPLE), help="photo to time on (default: the bundled sample)")
    p.add_argument("--size", default="640x480", help="frame size WxH the photo is fitted to (default 640x480)")
    p.add_argument("--repeats", type=int, default=20, help="timed runs (default 20)")
    p.add_argument("--warmup", type=int, default=3, help="untimed runs first (default 3)")
    p.add_argument("--yunet", help="YuNet .onnx to time on the same frame as a yardstick")
    p.add_argument("--json", help="write the results to this JSON file")
    add_detector_args(p, threads=False)
    p.add_argument("--threads", type=int, nargs="+", default=[1, 2], help="thread counts to time (default 1 2)")
    p.add_argument("--per-net", nargs="*", metavar="WEIGHTS",
                   help="time each net alone per engine instead (min/max/avg ms), for these weight sets "
                        "(default: --weights)")
    p.add_argument("--backends", nargs="+", choices=PER_NET_BACKENDS, default=list(PER_NET_BACKENDS),
                   help="engines for --per-net (default: all three)")
    p.add_argument("--calib", help="--per-net: photos to calibrate ncnn-int8 on (default: the bundled sample)")
    p.set_defaults(func=cmd_bench)
