"""``openmtcnn detect``: faces in images, folders and videos, printed, drawn and saved as JSON."""
from __future__ import annotations

import argparse
import math
import os
import sys
import time
from pathlib import Path

from openmtcnn.cli.errors import UsageError, exit_code
from openmtcnn.cli.options import add_detector_args, make_detector

VIDEO_EXTS = {".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg"}
WRITABLE_EXTS = {".jpg", ".jpeg", ".png", ".bmp", ".webp"}


def collect(paths: list[str], keep_format: bool = False) -> list[tuple[Path, Path]]:
    """(file, output name under --out) for each input; folders are searched recursively.

    Output names keep a folder's structure below its own name, are always inside --out,
    and never collide (a clash gets a numbered suffix). ``keep_format``: every output keeps
    its input's suffix; otherwise videos become .mp4 and images OpenCV cannot write .png.
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
            if not keep_format:
                rel = rel.with_suffix(".mp4" if suffix in VIDEO_EXTS else suffix if suffix in WRITABLE_EXTS else ".png")
            candidate, n = rel, 1
            while candidate in used:
                candidate = rel.with_name(f"{rel.stem}_{n}{rel.suffix}")
                n += 1
            used.add(candidate)
            found.append((f, candidate))
    return found


class JsonResults:
    """The --json file, rewritten atomically as results come (at most every ``every`` seconds) and at the end:
    whenever the run stops, it holds valid JSON of the inputs done."""

    def __init__(self, path: str | None, every: float = 1.0):
        self.path, self.every, self.results, self.saved = path, every, {}, -math.inf

    def add(self, key: str, value) -> None:
        self.results[key] = value
        if time.monotonic() - self.saved >= self.every:
            self.save()

    def save(self) -> None:
        from openmtcnn.fileio import write_json

        if self.path:
            write_json(self.path, self.results)
            self.saved = time.monotonic()


def unwritable(folder: Path) -> str | None:
    """Why files cannot be created in ``folder`` (or in the folders it would be made in), or None when they can."""
    existing = folder
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        return f"{existing} is not a folder"
    if not os.access(existing, os.W_OK | os.X_OK):
        return f"cannot write in {existing}"
    return None


def check_outputs(out: Path | None, json_path: Path | None) -> None:
    """Usage errors for --out and --json paths that cannot be written, found before any work is done."""
    if out is not None and out.exists() and not out.is_dir():
        raise UsageError(f"--out {out} is an existing file; give a folder for the annotated images")
    if json_path is not None and json_path.is_dir():
        raise UsageError(f"--json {json_path} is a folder; give a file name")
    for option, folder in (("--out", out), ("--json", json_path.parent if json_path else None)):
        problem = unwritable(folder) if folder is not None else None
        if problem:
            raise UsageError(f"{option}: {problem}")


def detect_image(detector, path: Path, out_path: Path | None, quiet: bool) -> list[dict]:
    """One image file's faces (as the ``mtcnn`` package's dicts), printed and drawn when asked."""
    from openmtcnn.cli.draw import annotate, write_image
    from openmtcnn.detect.cascade import to_dicts

    image = detector.read(path)
    d = detector.detect(image)
    faces = to_dicts(d)
    if out_path is not None:
        write_image(out_path, annotate(image, d))
    if not quiet:
        print(f"{path}: {len(faces)} face{'s' if len(faces) != 1 else ''}")
        for f in faces:
            print(f"  box {f['box']}  confidence {f['confidence']:.3f}  " +
                  "  ".join(f"{k} {v}" for k, v in f["keypoints"].items()))
    return faces


def detect_input(detector, path: Path, out_path: Path | None, quiet: bool):
    """Faces of an image, or per frame of a video."""
    from openmtcnn.cli.video import detect_video

    if path.suffix.lower() not in VIDEO_EXTS:
        return detect_image(detector, path, out_path, quiet)
    frames = detect_video(detector, path, out_path, show_progress=not quiet)
    if not quiet:
        print(f"{path}: {len(frames)} frames")
    return frames


def cmd_detect(args: argparse.Namespace) -> int:
    """Detect on every input; exit code 1 when some could not be read, 130 when interrupted."""
    import cv2

    from openmtcnn.progress import progress

    inputs = collect(args.paths)
    if not inputs:
        raise UsageError("no images or videos found in the given paths")
    out = Path(args.out) if args.out else None
    check_outputs(out, Path(args.json) if args.json else None)
    detector = make_detector(args)
    results, failures, done = JsonResults(args.json), 0, 0
    try:
        for path, rel in progress(inputs, desc="detect", enable=len(inputs) > 1 and not args.quiet):
            try:
                found = detect_input(detector, path, out / rel if out else None, args.quiet)
            except (OSError, ValueError, TypeError, cv2.error) as e:
                failures += 1
                print(f"error: {e}" if str(path) in str(e) else f"error: {path}: {e}", file=sys.stderr)
            else:
                results.add(str(path), found)
            done += 1
    except KeyboardInterrupt:
        results.save()
        saved = f"; the results of those are in {args.json}" if args.json else ""
        print(f"openmtcnn: interrupted after {done} of {len(inputs)} inputs{saved}", file=sys.stderr)
        return 130
    results.save()
    if out is not None and not args.quiet:
        print(f"annotated output in {out}/")
    return exit_code(failures, len(inputs))


def register(groups) -> None:
    """Add ``detect``."""
    p = groups.top.add_parser("detect", help="detect faces in images, folders and videos")
    p.add_argument("paths", nargs="+", help="image files, folders (searched recursively) or video files")
    p.add_argument("--out", help="folder for annotated images / videos")
    p.add_argument("--json", help="write the results to this JSON file ({input: faces, or faces per video frame}), "
                   "rewritten atomically as they come (at most once a second, and at the end): a stopped or "
                   "interrupted run leaves valid JSON of the inputs done")
    p.add_argument("--quiet", action="store_true", help="print only errors")
    add_detector_args(p)
    p.set_defaults(func=cmd_detect)
