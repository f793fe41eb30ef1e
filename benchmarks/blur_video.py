"""Face-frames that ``openmtcnn blur`` leaves unmasked in a video, and its frames/s, for several --detect-every.

The test video is made from one WIDER FACE val photo: a 16:9 window pans back and forth over it
and zooms in and out, resized to ``--size`` (default 1280x720, 300 frames at 30 fps, a 440 Hz
tone on an AAC track), so every face's box is known in every frame from the ground truth. The
photo is the one with the most faces that stay at least 20 px high in the widest view.

A *face-frame* is one face in one frame that is at least 20 px high there, at least 80% inside
the frame, and found by the detector on the still photo (IoU >= 0.4 with a detection), so the
figures are what the video path loses (tracking, detecting every K frames), not the detector's
recall. It is *unmasked* when less than half of its visible box lies under the mask of that
frame, *partly masked* when less than 80% does; the mask is drawn by ``mask_faces`` itself, so
it has the job's shape and growth. Frames/s is the whole job: decode, detect, track, mask, encode;
``speedup`` is frames/s over that of the first ``--every`` given (the every-frame cascade, K = 1).
``--keep``, ``--edge-depth`` and ``--no-camera`` set the tracking as the ``blur`` options do.

    .venv/bin/python benchmarks/blur_video.py --data ../shared/data --out runs/blur_video.json
    .venv/bin/python benchmarks/blur_video.py --frames 20 --size 320x180 --out /tmp/blur_smoke.json  # quick check
    .venv/bin/python benchmarks/blur_video.py --every 1 8 --out runs/blur_video_k8.json       # one comparison
"""
from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np

from openmtcnn import MTCNN
from openmtcnn.anonymise.mask import BlurConfig, mask_faces
from openmtcnn.anonymise.sequence import RECALL_SETTINGS, FrameMasker, SequenceConfig
from openmtcnn.anonymise.track import TrackConfig
from openmtcnn.anonymise.video import edit_video
from openmtcnn.data.sources import read_wider
from openmtcnn.fileio import write_json
from openmtcnn.geometry import iou_matrix

VAL_GT = "widerface/wider_face_split/wider_face_val_bbx_gt.txt"
VAL_IMAGES = "widerface/WIDER_val/images"
FPS, SAMPLE_RATE = 30, 44100
MIN_FACE = 20  # px high in the frame: smaller faces are not counted
INSIDE = 0.8  # share of a face's box that must be inside the frame for it to count
FOUND_IOU = 0.4  # a ground-truth face is found on the still photo when a detection overlaps it this much
UNMASKED, PARTLY = 0.5, 0.8  # visible box share under the mask below which a face-frame is unmasked / partly masked
EVERY = (1, 2, 3, 5, 8)


def windows(width: int, height: int, n: int, aspect: float) -> np.ndarray:
    """(n, 3): x0, y0 and width of the camera window in each frame: a pan back and forth, a zoom in and out."""
    t = np.linspace(0, 1, n)
    full = min(width, height * aspect)
    w = full / (1 + 0.6 * (0.5 - 0.5 * np.cos(2 * np.pi * t)))  # zoom 1 -> 1.6 -> 1
    h = w / aspect
    cx = width / 2 + (width - w) / 2 * np.sin(2 * np.pi * t)
    cy = height / 2 + (height - h) / 2 * np.sin(np.pi * t)
    return np.stack([cx - w / 2, cy - h / 2, w], axis=1)


def pick_photo(data: Path, size: tuple[int, int]):
    """The val photo with the most faces that stay MIN_FACE px high in the widest view (ties: file name)."""
    photos = read_wider(data / VAL_GT, data / VAL_IMAGES)
    scale = size[0] / 1024  # WIDER photos are 1024 px wide
    count = lambda p: int(((p.boxes[:, 3] - p.boxes[:, 1]) * scale >= MIN_FACE + 4).sum())  # noqa: E731
    return max(photos, key=lambda p: (count(p), -len(p.boxes), str(p.path)[::-1]))


def make_video(path: Path, photo: np.ndarray, boxes: np.ndarray, n: int, size: tuple[int, int]) -> np.ndarray:
    """Write the pan and zoom with a tone; the faces' boxes in every frame, (n, faces, 4)."""
    out = av.open(str(path), "w")
    video = out.add_stream("libx264", rate=FPS, options={"crf": "18", "preset": "veryfast"})
    video.width, video.height, video.pix_fmt = size[0], size[1], "yuv420p"
    audio = out.add_stream("aac", rate=SAMPLE_RATE)
    audio.layout = "mono"
    per_frame = []
    for i, (x0, y0, w) in enumerate(windows(photo.shape[1], photo.shape[0], n, size[0] / size[1])):
        s = size[0] / w
        rgb = cv2.warpAffine(photo, np.array([[s, 0, -x0 * s], [0, s, -y0 * s]]), size, flags=cv2.INTER_LINEAR)
        per_frame.append((boxes - [x0, y0, x0, y0]) * s)
        frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
        frame.pts, frame.time_base = i, Fraction(1, FPS)
        out.mux(video.encode(frame))
    out.mux(video.encode(None))
    tone = (0.3 * np.sin(2 * np.pi * 440 * np.arange(SAMPLE_RATE * n // FPS) / SAMPLE_RATE)).astype(np.float32)
    for k in range(0, len(tone), 1024):
        frame = av.AudioFrame.from_ndarray(tone[None, k:k + 1024], format="flt", layout="mono")
        frame.sample_rate, frame.pts, frame.time_base = SAMPLE_RATE, k, Fraction(1, SAMPLE_RATE)
        out.mux(audio.encode(frame))
    out.mux(audio.encode(None))
    out.close()
    return np.array(per_frame)


def counted(boxes: np.ndarray, size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Which faces of one frame count (high enough, inside enough), and their boxes clipped to the frame."""
    clipped = np.clip(boxes, 0, [size[0], size[1], size[0], size[1]])
    area = lambda b: np.maximum(b[:, 2] - b[:, 0], 0) * np.maximum(b[:, 3] - b[:, 1], 0)  # noqa: E731
    ok = (boxes[:, 3] - boxes[:, 1] >= MIN_FACE) & (area(clipped) >= INSIDE * area(boxes))
    return ok, np.rint(clipped).astype(int)


def coverage(masked: list[np.ndarray], truth: np.ndarray, size: tuple[int, int], blur: BlurConfig) -> np.ndarray:
    """Share of each counted face-frame's visible box under that frame's mask, all frames in order."""
    probe = BlurConfig(mode="solid", shape=blur.shape, mask_scale=blur.mask_scale, colour=(255, 255, 255))
    blank = np.zeros((size[1], size[0], 3), np.uint8)
    shares = []
    for boxes, faces in zip(masked, truth):
        under = mask_faces(blank, boxes, probe)[..., 0] > 0
        ok, clipped = counted(faces, size)
        shares += [under[y1:y2, x1:x2].mean() for x1, y1, x2, y2 in clipped[ok]]
    return np.array(shares)


def run(path: Path, detector: MTCNN, config: SequenceConfig, workdir: Path) -> tuple[list[np.ndarray], float]:
    """The blur job on the video: the boxes masked in each frame, and frames/s of the whole job."""
    masker, masked = FrameMasker(detector, config), []

    def edit(index: int, seconds: float, rgb: np.ndarray) -> np.ndarray:
        out, faces = masker(rgb)
        masked.append(faces.boxes)
        return out

    start = time.perf_counter()
    frames = edit_video(path, workdir / f"masked_{config.detect_every}.mp4", edit, show_progress=False)
    return masked, frames / (time.perf_counter() - start)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=os.environ.get("OPENMTCNN_DATA", "../shared/data"))
    parser.add_argument("--frames", type=int, default=300)
    parser.add_argument("--size", default="1280x720", help="WIDTHxHEIGHT of the video")
    parser.add_argument("--threads", type=int, default=None, help="detector threads (default: all cores)")
    parser.add_argument("--every", type=int, nargs="+", default=list(EVERY), metavar="K",
                        help=f"the --detect-every values to run, the first the reference of speedup (default {EVERY})")
    parser.add_argument("--keep", type=int, default=TrackConfig.keep)
    parser.add_argument("--edge-depth", type=float, default=SequenceConfig.edge_depth)
    parser.add_argument("--no-camera", action="store_true")
    parser.add_argument("--out", default="runs/blur_video.json")
    args = parser.parse_args()
    data, size = Path(args.data), tuple(int(v) for v in args.size.lower().split("x"))
    for needed in (data / VAL_GT, data / VAL_IMAGES):
        if not needed.exists():
            print(f"missing: {needed} (give --data, the folder holding widerface/)", file=sys.stderr)
            return 2

    photo = pick_photo(data, size)
    rgb = cv2.cvtColor(cv2.imread(str(photo.path)), cv2.COLOR_BGR2RGB)
    detector = MTCNN(**RECALL_SETTINGS, threads=args.threads)
    found = iou_matrix(photo.boxes, detector.detect(rgb).boxes.astype(np.float64))
    faces = photo.boxes[(found.max(axis=1, initial=0) >= FOUND_IOU)]
    print(f"{photo.path.name}: {len(photo.boxes)} faces, {len(faces)} found on the still photo", file=sys.stderr)

    results = []
    with tempfile.TemporaryDirectory() as tmp:
        video = Path(tmp) / "pan_zoom.mp4"
        truth = make_video(video, rgb, faces, args.frames, size)
        for every in args.every:
            config = SequenceConfig(track=TrackConfig(keep=args.keep, camera=not args.no_camera),
                                    detect_every=every, edge_depth=args.edge_depth)
            masked, rate = run(video, detector, config, Path(tmp))
            shares = coverage(masked, truth, size, config.blur)
            results.append({"detect_every": every, "face_frames": len(shares),
                            "unmasked": float((shares < UNMASKED).mean()) if len(shares) else None,
                            "partly_masked": float((shares < PARTLY).mean()) if len(shares) else None,
                            "frames_per_s": rate, "speedup": rate / results[0]["frames_per_s"] if results else 1.0})
            print(f"detect every {every}: {results[-1]}", file=sys.stderr)

    print("| --detect-every | face-frames | unmasked (<50% covered) | partly (<80%) | frames/s | speedup |\n"
          "|---|---|---|---|---|---|")
    for r in results:
        share = lambda v: "-" if v is None else f"{100 * v:.2f}%"  # noqa: E731
        print(f"| {r['detect_every']} | {r['face_frames']} | {share(r['unmasked'])} | {share(r['partly_masked'])} "
              f"| {r['frames_per_s']:.1f} | {r['speedup']:.2f}x |")
    write_json(args.out, {"photo": str(photo.path), "frames": args.frames, "size": list(size), "fps": FPS,
                          "detector": {k: list(v) if isinstance(v, tuple) else v for k, v in RECALL_SETTINGS.items()},
                          "keep": args.keep, "edge_depth": args.edge_depth, "camera": not args.no_camera,
                          "threads": args.threads, "machine": platform.platform(), "cpus": os.cpu_count(),
                          "results": results}, digits=5)
    return 0


if __name__ == "__main__":
    sys.exit(main())
