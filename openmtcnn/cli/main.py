"""The ``openmtcnn`` command: detect, eval, convert."""
from __future__ import annotations

import argparse
import importlib
import json
import sys
from pathlib import Path

from openmtcnn.cli.errors import UsageError, parse_size
from openmtcnn.cli.eval_custom import add_dataset_args as add_custom_dataset_args

# Modules adding sub-commands: each has register(top-level, export, compress) sub-parsers.
COMMAND_MODULES = ("train", "compress", "prune", "quantize", "export_c")

VIDEO_EXTS = {".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg"}



def add_detector_args(p: argparse.ArgumentParser, threads: bool = True) -> None:
    p.add_argument("--min-face", type=float, default=20, help="smallest face to find, in pixels (default 20)")
    p.add_argument("--scale-factor", type=float, default=0.709, help="image pyramid factor (default 0.709)")
    p.add_argument("--thresholds", type=float, nargs=3, default=(0.6, 0.7, 0.7), metavar=("P", "R", "O"),
                   help="P-Net, R-Net, O-Net face probability thresholds (default 0.6 0.7 0.7)")
    p.add_argument("--weights", default="published", help="weight set name or folder (default: published)")
    if threads:
        p.add_argument("--threads", type=int, default=None, help="CPU threads for the nets (default: all)")
    p.add_argument("--device", default="auto", choices=["cpu", "cuda", "auto"],
                   help="where the nets run (default auto: a CUDA GPU when present, else the CPU)")


def make_detector(args: argparse.Namespace):
    from openmtcnn import MTCNN

    return MTCNN(min_face_size=args.min_face, scale_factor=args.scale_factor, thresholds=args.thresholds,
                 weights=args.weights, threads=args.threads, device=args.device)


WRITABLE_EXTS = {".jpg", ".jpeg", ".png", ".bmp", ".webp"}


def collect(paths: list[str]) -> list[tuple[Path, Path]]:
    """(file, output name under --out) for each input; folders are searched recursively.

    Output names keep a folder's structure below its own name, are always inside --out,
    and never collide (a clash gets a numbered suffix).
    """
    from openmtcnn.detect.image import IMAGE_EXTS, image_files

    found, used = [], set()
    for arg in paths:
        p = Path(arg)
        if p.is_dir():
            root = p.resolve()
            files = image_files(p, IMAGE_EXTS | VIDEO_EXTS)
            pairs = [(f, Path(root.name or "root") / f.resolve().relative_to(root)) for f in files]
        else:
            pairs = [(p, Path(p.name))]
        for f, rel in pairs:
            suffix = f.suffix.lower()
            rel = rel.with_suffix(".mp4" if suffix in VIDEO_EXTS else suffix if suffix in WRITABLE_EXTS else ".png")
            candidate, n = rel, 1
            while candidate in used:
                candidate = rel.with_name(f"{rel.stem}_{n}{rel.suffix}")
                n += 1
            used.add(candidate)
            found.append((f, candidate))
    return found


def cmd_detect(args: argparse.Namespace) -> int:
    from openmtcnn.cli.draw import annotate, write_image
    from openmtcnn.cli.video import detect_video
    from openmtcnn.detect.cascade import to_dicts
    from openmtcnn.detect.image import to_rgb
    from openmtcnn.progress import progress

    detector = make_detector(args)
    inputs = collect(args.paths)
    if not inputs:
        raise UsageError("no images or videos found in the given paths")
    out = Path(args.out) if args.out else None
    results, failures = {}, 0
    for path, rel in progress(inputs, desc="detect", enable=len(inputs) > 1 and not args.quiet):
        try:
            if path.suffix.lower() in VIDEO_EXTS:
                results[str(path)] = detect_video(detector, path, out / rel if out else None,
                                                  show_progress=not args.quiet)
                if not args.quiet:
                    print(f"{path}: {len(results[str(path)])} frames")
                continue
            image = to_rgb(path)
            d = detector.detect(image)
            faces = to_dicts(d)
            results[str(path)] = faces
            if out is not None:
                write_image(out / rel, annotate(image, d))
            if not args.quiet:
                print(f"{path}: {len(faces)} face{'s' if len(faces) != 1 else ''}")
                for f in faces:
                    print(f"  box {f['box']}  confidence {f['confidence']:.3f}  " +
                          "  ".join(f"{k} {v}" for k, v in f["keypoints"].items()))
        except (OSError, ValueError, TypeError) as e:
            failures += 1
            print(f"error: {path}: {e}", file=sys.stderr)
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(results, indent=1) + "\n")
    if out is not None and not args.quiet:
        print(f"annotated output in {out}/")
    if failures:
        print(f"{failures} of {len(inputs)} inputs failed", file=sys.stderr)
    return 1 if failures else 0


def cmd_eval_widerface(args: argparse.Namespace) -> int:
    from openmtcnn.evaluate.report import save_widerface
    from openmtcnn.evaluate.widerface import run_widerface

    for name in ("images", "gt"):
        if not Path(getattr(args, name)).is_dir():
            raise UsageError(f"--{name} folder not found: {getattr(args, name)}")
    results = run_widerface(make_detector(args), args.images, args.gt, args.out, stages=args.stages)
    settings = {"min_face": args.min_face, "scale_factor": args.scale_factor,
                "thresholds": list(args.thresholds), "weights": args.weights}
    print(save_widerface(results, settings, args.out))
    return 0


def cmd_eval_compare(args: argparse.Namespace) -> int:
    from openmtcnn import MTCNN
    from openmtcnn.cli.eval_custom import load_dataset
    from openmtcnn.evaluate.compare import (
        compare,
        custom_protocol,
        fddb_protocol,
        landmarks_protocol,
        parse_model,
        widerface_protocol,
    )

    needed = {"widerface": ("images", "gt"), "landmarks": ("images", "list"), "fddb": ("images", "folds"),
              "custom": ("images", "format")}[args.on]
    for name in needed:
        value = getattr(args, name)
        if not value or (name != "format" and not Path(value).exists()):
            raise UsageError(f"--on {args.on} needs --{name}" + ("" if name == "format" else " (an existing path)"))
    if args.on == "widerface":
        protocol = widerface_protocol(args.images, args.gt)
    elif args.on == "landmarks":
        protocol = landmarks_protocol(args.list, args.images)
    elif args.on == "fddb":
        protocol = fddb_protocol(args.images, args.folds)
    else:
        protocol = custom_protocol(load_dataset(args)[0], args.iou)

    def detector(spec: str):
        name, settings = parse_model(spec)
        base = {"min_face_size": args.min_face, "scale_factor": args.scale_factor,
                "thresholds": args.thresholds, "threads": args.threads, "device": args.device}
        try:
            return MTCNN(weights=name, **{**base, **settings})
        except TypeError as e:
            raise ValueError(f"bad settings in model spec {spec!r}: {e}") from None

    print(compare(args.models, detector, protocol, args.out, args.on))
    print(f"report: {Path(args.out) / 'report.md'}")
    return 0


def cmd_convert(args: argparse.Namespace) -> int:
    from openmtcnn.export.convert import convert_published

    if not Path(args.src).is_dir():
        raise UsageError(f"source folder not found: {args.src}")
    print(f"wrote {convert_published(args.src, args.out)}")
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
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
    if any(r.get("workers", 1) > 1 for r in rows):
        print("with several workers, levels and crops run in parallel: per-level resizing and NMS are timed in "
              "'pyramid + P-Net', crops in 'R-Net' and 'O-Net'")
    if args.json:
        report = {"image": str(args.image), "size": [width, height], "min_face": args.min_face,
                  "thresholds": list(args.thresholds), "repeats": args.repeats, "results": rows}
        atomic_write_bytes(args.json, (json.dumps(report, indent=1) + "\n").encode())
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="openmtcnn", description="MTCNN face detection and alignment")
    from openmtcnn import __version__
    parser.add_argument("--version", action="version", version=f"openmtcnn {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("detect", help="detect faces in images, folders and videos")
    p.add_argument("paths", nargs="+", help="image files, folders (searched recursively) or video files")
    p.add_argument("--out", help="folder for annotated images / videos")
    p.add_argument("--json", help="write all results to this JSON file")
    p.add_argument("--quiet", action="store_true", help="print only errors")
    add_detector_args(p)
    p.set_defaults(func=cmd_detect)

    ev = sub.add_parser("eval", help="evaluate on a benchmark").add_subparsers(dest="dataset", required=True)
    p = ev.add_parser("widerface", help="WIDER FACE val AP (easy/medium/hard), official protocol")
    p.add_argument("--images", required=True, help="WIDER_val/images folder")
    p.add_argument("--gt", required=True, help="eval_tools/ground_truth folder (the .mat files)")
    p.add_argument("--out", default="runs/widerface", help="folder for predictions, JSON and plots")
    p.add_argument("--stages", action="store_true",
                   help="also count where each face is lost (P-Net, R-Net, O-Net, final NMS) per face size")
    add_detector_args(p)
    p.set_defaults(func=cmd_eval_widerface)

    from openmtcnn.cli.eval_custom import register as register_custom
    from openmtcnn.cli.eval_fddb import register as register_fddb
    from openmtcnn.cli.eval_landmarks import register as register_landmarks
    for register in (register_landmarks, register_fddb, register_custom):
        register(ev, add_detector_args, make_detector)

    p = sub.add_parser("bench", help="latency, end to end and per stage (optionally next to YuNet)")
    p.add_argument("--image", default=str(Path(__file__).resolve().parents[1] / "assets" / "astronaut.png"),
                   help="photo to time on (default: the bundled sample)")
    p.add_argument("--size", default="640x480", help="frame size WxH the photo is fitted to (default 640x480)")
    p.add_argument("--repeats", type=int, default=20, help="timed runs (default 20)")
    p.add_argument("--warmup", type=int, default=3, help="untimed runs first (default 3)")
    p.add_argument("--yunet", help="YuNet .onnx to time on the same frame as a yardstick")
    p.add_argument("--json", help="write the results to this JSON file")
    add_detector_args(p, threads=False)
    p.set_defaults(func=cmd_bench)
    p.add_argument("--threads", type=int, nargs="+", default=[1, 2], help="thread counts to time (default 1 2)")

    p = ev.add_parser("compare", help="several models side by side on one dataset (table + plots)")
    p.add_argument("models", nargs="+", help="weight set names or folders, optionally NAME:key=value,... "
                   "(e.g. published:min_face_size=40)")
    p.add_argument("--on", required=True, choices=["widerface", "landmarks", "fddb", "custom"], help="dataset protocol")
    p.add_argument("--images", help="images (widerface: WIDER_val/images; landmarks: the list's root; "
                   "fddb: originalPics; custom: see eval custom)")
    p.add_argument("--gt", help="widerface: eval_tools/ground_truth folder")
    p.add_argument("--list", help="landmarks: CNN_FacePoint or plain landmark list")
    p.add_argument("--folds", help="fddb: FDDB-folds folder")
    add_custom_dataset_args(p, required=False, images=False)
    p.add_argument("--out", default="runs/compare", help="folder for the report, JSON and plots")
    add_detector_args(p)
    p.set_defaults(func=cmd_eval_compare)

    export = sub.add_parser("export", help="export models: trained checkpoints, int8 ONNX, C for microcontrollers")
    export = export.add_subparsers(dest="what", required=True)
    compress = sub.add_parser("compress", help="size, prune, quantise and distil the nets")
    compress = compress.add_subparsers(dest="step", required=True)
    for name in COMMAND_MODULES:
        importlib.import_module(f"openmtcnn.cli.{name}").register(sub, export, compress)

    p = sub.add_parser("convert", help="convert the authors' published weights (npy) to a weight set")
    p.add_argument("src", help="folder with det1.npy, det2.npy, det3.npy (or an npy/ subfolder)")
    p.add_argument("--out", default="openmtcnn/weights/published", help="weight set folder to write")
    p.set_defaults(func=cmd_convert)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except UsageError as e:
        print(f"openmtcnn: error: {e}", file=sys.stderr)
        return 2
    except (OSError, ValueError, TypeError, ImportError, RuntimeError) as e:
        print(f"openmtcnn: error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
