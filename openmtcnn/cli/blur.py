"""``openmtcnn blur``: faces in images, folders and videos masked, written under --out in their own formats."""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from openmtcnn.anonymise.mask import MODES, SHAPES, BlurConfig
from openmtcnn.anonymise.sequence import RECALL_SETTINGS
from openmtcnn.anonymise.track import TrackConfig
from openmtcnn.cli.detect import VIDEO_EXTS, collect, unwritable
from openmtcnn.cli.errors import UsageError, exit_code
from openmtcnn.cli.options import add_detector_args, make_detector


class BoxLog:
    """The --boxes file: one JSON line per image or video frame, written as they come (a stopped run keeps them)."""

    def __init__(self, path: str | None):
        if path:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        self.file = open(path, "w", buffering=1) if path else None

    def write(self, path: Path, frame: int, boxes, scores, size: tuple[int, int], **extra) -> None:
        """One line: the file, the frame index, its boxes (x1 y1 x2 y2, inside the picture) and their scores."""
        if self.file is None:
            return
        import numpy as np

        w, h = size
        clipped = np.clip(np.asarray(boxes, np.float64).reshape(-1, 4), 0, [w, h, w, h])
        line = {"file": str(path), "frame": frame, **extra,
                "boxes": np.round(clipped, 2).tolist(), "scores": np.round(np.asarray(scores, float), 4).tolist()}
        self.file.write(json.dumps(line) + "\n")

    def close(self) -> None:
        if self.file is not None:
            self.file.close()


def save_image(path: Path, rgb) -> None:
    """Write an RGB image in the format its suffix names (grey for .pgm), atomically."""
    import cv2

    from openmtcnn.fileio import atomic_write_bytes

    pixels = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY if path.suffix.lower() == ".pgm" else cv2.COLOR_RGB2BGR)
    ok, buf = cv2.imencode(path.suffix or ".png", pixels)
    if not ok:
        raise ValueError(f"{path}: OpenCV could not encode an image in this format")
    atomic_write_bytes(path, buf.tobytes())


def blur_image(detector, path: Path, out_path: Path | None, config: BlurConfig, log: BoxLog) -> str:
    """Mask one image's faces; what to print about it."""
    from openmtcnn.anonymise.mask import mask_faces

    image = detector.read(path)
    d = detector.detect(image)
    if out_path is not None:
        save_image(out_path, mask_faces(image, d.boxes, config))
    log.write(path, 0, d.boxes, d.scores, (image.shape[1], image.shape[0]))
    return f"{len(d.boxes)} face{'s' if len(d.boxes) != 1 else ''}"


def blur_video(detector, path: Path, out_path: Path | None, config, log: BoxLog, show_progress: bool) -> str:
    """Mask every frame of a video, following faces from frame to frame; what to print about it."""
    from openmtcnn.anonymise.sequence import FrameMasker
    from openmtcnn.anonymise.video import edit_video

    masker, with_faces = FrameMasker(detector, config), 0

    def edit(index: int, seconds: float, rgb):
        nonlocal with_faces
        masked, faces = masker(rgb)
        with_faces += len(faces.boxes) > 0
        log.write(path, index, faces.boxes, faces.scores, (rgb.shape[1], rgb.shape[0]), time=round(seconds, 4),
                  tracks=faces.ids.tolist())
        return masked

    start = time.perf_counter()
    frames = edit_video(path, out_path, edit, show_progress)
    rate = frames / max(time.perf_counter() - start, 1e-9)
    return f"{frames} frames, faces masked in {with_faces}, {rate:.1f} frames/s"


def sequence_config(args: argparse.Namespace):
    """The masking, tracking and detection schedule the options ask for (a bad value is a usage error)."""
    from openmtcnn.anonymise.sequence import SequenceConfig

    try:
        return SequenceConfig(blur=BlurConfig(mode=args.mode, shape=args.shape, mask_scale=args.mask_scale),
                              track=TrackConfig(keep=args.keep, camera=not args.no_camera),
                              detect_every=args.detect_every, edge_depth=args.edge_depth)
    except ValueError as e:
        raise UsageError(str(e).replace("mask_scale", "--mask-scale").replace("detect_every", "--detect-every")
                         .replace("keep ", "--keep ").replace("edge_depth", "--edge-depth")) from None


def check_paths(args: argparse.Namespace, inputs: list[tuple[Path, Path]], out: Path | None) -> None:
    """Usage errors found before any work: what is missing, what cannot be written, what would overwrite an input."""
    if args.mode == "none" and not args.boxes:
        raise UsageError("--mode none masks nothing and writes only the boxes: give --boxes FILE")
    if args.mode != "none" and out is None:
        raise UsageError("give --out DIR, the folder for the masked files (or --mode none --boxes FILE for boxes only)")
    if out is not None and out.exists() and not out.is_dir():
        raise UsageError(f"--out {out} is an existing file; give a folder")
    for option, folder in (("--out", out), ("--boxes", Path(args.boxes).parent if args.boxes else None)):
        problem = unwritable(folder) if folder is not None else None
        if problem:
            raise UsageError(f"{option}: {problem}")
    for path, rel in inputs if out is not None else []:
        if (out / rel).resolve() == path.resolve():
            raise UsageError(f"{out / rel} would overwrite its input {path}; give another --out folder")
    if any(path.suffix.lower() in VIDEO_EXTS for path, _ in inputs):
        try:
            import av  # noqa: F401
        except ImportError:
            raise ImportError("videos need PyAV: pip install 'openmtcnn[video]' (or pip install av)") from None


def cmd_blur(args: argparse.Namespace) -> int:
    """Mask every input; exit code 1 when some could not be read or written, 130 when interrupted."""
    import cv2

    from openmtcnn.progress import progress

    config = sequence_config(args)
    inputs = collect(args.paths, keep_format=True)
    if not inputs:
        raise UsageError("no images or videos found in the given paths")
    out = Path(args.out) if args.out and args.mode != "none" else None
    check_paths(args, inputs, out)
    errors: tuple[type[BaseException], ...] = (OSError, ValueError, TypeError, cv2.error)
    if any(path.suffix.lower() in VIDEO_EXTS for path, _ in inputs):
        import av

        errors += (av.FFmpegError,)
    detector = make_detector(args)
    log, failures, done = BoxLog(args.boxes), 0, 0
    try:
        for path, rel in progress(inputs, desc="blur", enable=len(inputs) > 1 and not args.quiet, unit="file"):
            target = out / rel if out is not None else None
            try:
                if path.suffix.lower() in VIDEO_EXTS:
                    said = blur_video(detector, path, target, config, log, show_progress=not args.quiet)
                else:
                    said = blur_image(detector, path, target, config.blur, log)
            except errors as e:
                failures += 1
                print(f"error: {e}" if str(path) in str(e) else f"error: {path}: {e}", file=sys.stderr)
            else:
                if not args.quiet:
                    print(f"{path}: {said}" + (f" -> {target}" if target is not None else ""))
            done += 1
    except KeyboardInterrupt:
        print(f"openmtcnn: interrupted after {done} of {len(inputs)} inputs (a video being written keeps the "
              "frames done)", file=sys.stderr)
        return 130
    finally:
        log.close()
    return exit_code(failures, len(inputs))


def register(groups) -> None:
    """Add ``blur``."""
    p = groups.top.add_parser("blur", help="anonymise faces in images, folders and videos (blur, mosaic, solid)")
    p.add_argument("paths", nargs="+", help="image files, folders (searched recursively) or video files")
    p.add_argument("--out", help="folder for the masked files: same names and formats (videos keep their audio)")
    p.add_argument("--mode", choices=MODES, default="blur",
                   help="blur, mosaic, solid (black) or none (boxes only, with --boxes; default blur)")
    p.add_argument("--shape", choices=SHAPES, default="ellipse", help="mask shape (default ellipse)")
    p.add_argument("--mask-scale", type=float, default=1.3,
                   help="each face box's sides are multiplied by this before masking (default 1.3)")
    p.add_argument("--keep", type=int, default=TrackConfig.keep,
                   help="videos: frames a face stays masked after the detector last found it; with --detect-every K, "
                        f"at least K (default {TrackConfig.keep})")
    p.add_argument("--detect-every", type=int, default=1, metavar="K",
                   help="videos: the full detector every K frames, only R-Net and O-Net on the followed faces "
                        "in between (faster; new faces wait for the next full frame; default 1)")
    p.add_argument("--edge-depth", type=float, default=48.0, metavar="PX",
                   help="videos, with --detect-every K > 1: between full frames, P-Net scans the edges the camera "
                        "brings into view, this many px past them, for faces coming in (0: off; default 48)")
    p.add_argument("--no-camera", action="store_true",
                   help="videos: follow each face on its own, without estimating the camera's pan and zoom "
                        "from all of them (also turns off the edge scan)")
    p.add_argument("--boxes", help="write the masked boxes to this file, one JSON line per image or video frame")
    p.add_argument("--quiet", action="store_true", help="print only errors")
    add_detector_args(p, min_face=RECALL_SETTINGS["min_face_size"], thresholds=RECALL_SETTINGS["thresholds"])
    p.set_defaults(func=cmd_blur)
