"""Latency of openmtcnn against OpenCV's YuNet (and other MTCNNs when installed) on real photos.

Two frames are composed deterministically from the WIDER FACE val subset: a 640x480 crop of one
photo with a handful of faces, and a 1920x1080 3x2 tiling of six photos. Every detector runs on
the same frames, at each thread count, with warm-up runs first; one timed sample is one call of
the detector's own detect function on an already decoded image. Throughput: the first 32 val
photos (ground-truth file order) fitted to 640x480, as one ``detect(list)`` call for openmtcnn
and a loop for YuNet (it has no list API), in frames per second. ``--backends onnx,ncnn`` times
openmtcnn on each backend in the same run (``make bench`` does).

    .venv/bin/python benchmarks/bench_latency.py --data ../shared/data --out runs/bench.json
"""
from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import importlib
import inspect
import json
import os
import platform
import subprocess
import sys
import time
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Callable

import cv2
import numpy as np

from openmtcnn.evaluate.speed import summarise, time_calls
from openmtcnn.geometry import iou_matrix

YUNET_FILE = "peers/yunet/face_detection_yunet_2023mar.onnx"
VAL_IMAGES = "widerface/WIDER_val/images"
VAL_GT = "widerface/wider_face_split/wider_face_val_bbx_gt.txt"
SMALL_FRAME, LARGE_FRAME = (640, 480), (1920, 1080)
BATCH = 32  # frames in the throughput case
TILES = (3, 2)  # columns, rows of the large frame: six 640x540 tiles
BIG_FACE = 20  # px: a gt face counts as "big" when the shorter side of its box is at least this
MATCH_IOU = 0.5

Boxes = np.ndarray  # (N, 4) float: x1, y1, x2, y2


class Skip(Exception):
    """A case that cannot run here; recorded with its reason instead of timings."""


# ---- data: ground truth and frame composition ----------------------------------------------

@dataclass
class GtImage:
    """One val image from the ground-truth file: valid face boxes as x, y, w, h."""

    path: str  # relative to WIDER_val/images
    boxes: np.ndarray


@dataclass
class Placement:
    """Where one photo lands in a frame: scaled to fill the tile, then centre-cropped."""

    source: str
    scale: float
    crop_xy: tuple[int, int]  # top-left of the crop in the scaled photo
    tile_xy: tuple[int, int]  # top-left of the tile in the frame
    tile_wh: tuple[int, int]
    faces: np.ndarray  # gt boxes in frame coordinates (x1, y1, x2, y2), clipped to the tile
    sizes: np.ndarray  # shorter side of each scaled (unclipped) gt box, px


@dataclass
class Frame:
    """A composed test image (RGB uint8) and the gt faces in it."""

    name: str
    image: np.ndarray
    placements: list[Placement] = field(default_factory=list)

    @property
    def gt_boxes(self) -> Boxes:
        return np.concatenate([p.faces for p in self.placements]) if self.placements else np.zeros((0, 4))

    @property
    def gt_sizes(self) -> np.ndarray:
        return np.concatenate([p.sizes for p in self.placements]) if self.placements else np.zeros(0)

    def describe(self) -> dict:
        sizes = self.gt_sizes
        return {
            "size": [int(self.image.shape[1]), int(self.image.shape[0])],
            "pixels_sha1": hashlib.sha1(np.ascontiguousarray(self.image).tobytes()).hexdigest(),
            "gt_faces": int(len(sizes)),
            "gt_faces_ge_20px": int((sizes >= 20).sum()),
            "gt_faces_ge_40px": int((sizes >= 40).sum()),
            "sources": [{
                "file": f"WIDER_val/images/{p.source}",
                "scale": round(p.scale, 4),
                "crop_xy": list(p.crop_xy),
                "tile_xy": list(p.tile_xy),
                "tile_wh": list(p.tile_wh),
                "gt_faces": int(len(p.sizes)),
                "gt_faces_ge_20px": int((p.sizes >= 20).sum()),
                "gt_face_sizes_px": [round(float(s), 1) for s in p.sizes],
            } for p in self.placements],
        }


def read_val_gt(path: Path) -> list[GtImage]:
    """Parse the official WIDER FACE txt ground truth, dropping faces flagged invalid."""
    lines = path.read_text().split("\n")
    images, i = [], 0
    while i < len(lines) and lines[i].strip():
        name, count = lines[i].strip(), int(lines[i + 1])
        rows = [ln.split() for ln in lines[i + 2:i + 2 + max(count, 1)]]
        i += 2 + max(count, 1)
        boxes = [list(map(float, r[:4])) for r in rows[:count] if int(r[7]) == 0 and float(r[2]) > 0 and float(r[3]) > 0]
        images.append(GtImage(name, np.array(boxes, np.float64).reshape(-1, 4)))
    return images


def image_size(path: Path) -> tuple[int, int]:
    """Width and height without decoding the pixels when Pillow is there."""
    try:
        from PIL import Image
    except ImportError:
        img = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if img is None:
            raise RuntimeError(f"could not read {path}") from None
        return img.shape[1], img.shape[0]
    with Image.open(path) as im:
        return im.size


def place(gt: GtImage, photo_wh: tuple[int, int], tile_xy: tuple[int, int], tile_wh: tuple[int, int]) -> Placement:
    """Scale a photo to fill a tile (centre crop) and carry its gt boxes along.

    A face is kept when at least half of its box stays inside the tile.
    """
    (w, h), (tw, th) = photo_wh, tile_wh
    scale = max(tw / w, th / h)
    sw, sh = round(w * scale), round(h * scale)
    cx, cy = (sw - tw) // 2, (sh - th) // 2
    xyxy = np.concatenate([gt.boxes[:, :2], gt.boxes[:, :2] + gt.boxes[:, 2:]], axis=1) * scale - [cx, cy, cx, cy]
    clipped = np.clip(xyxy, 0, [tw, th, tw, th])
    area = (xyxy[:, 2] - xyxy[:, 0]) * (xyxy[:, 3] - xyxy[:, 1])
    inside = (clipped[:, 2] - clipped[:, 0]) * (clipped[:, 3] - clipped[:, 1])
    keep = inside >= 0.5 * area
    sizes = np.minimum(gt.boxes[keep, 2], gt.boxes[keep, 3]) * scale
    faces = clipped[keep] + [tile_xy[0], tile_xy[1], tile_xy[0], tile_xy[1]]
    return Placement(gt.path, scale, (cx, cy), tile_xy, tile_wh, faces, sizes)


def render(frame_wh: tuple[int, int], placements: list[Placement], images_dir: Path) -> np.ndarray:
    """Paint each placed photo into its tile of an RGB frame."""
    out = np.zeros((frame_wh[1], frame_wh[0], 3), np.uint8)
    for p in placements:
        bgr = cv2.imread(str(images_dir / p.source), cv2.IMREAD_COLOR)
        if bgr is None:
            raise RuntimeError(f"could not read {images_dir / p.source}")
        h, w = bgr.shape[:2]
        sw, sh = round(w * p.scale), round(h * p.scale)
        interp = cv2.INTER_AREA if p.scale < 1 else cv2.INTER_LINEAR
        scaled = cv2.resize(bgr, (sw, sh), interpolation=interp)
        (cx, cy), (tx, ty), (tw, th) = p.crop_xy, p.tile_xy, p.tile_wh
        out[ty:ty + th, tx:tx + tw] = cv2.cvtColor(scaled[cy:cy + th, cx:cx + tw], cv2.COLOR_BGR2RGB)
    return out


def rank_key(p: Placement, target: float) -> tuple:
    """Prefer photos whose faces are all big, then a big-face count near the target, then by name."""
    big = int((p.sizes >= BIG_FACE).sum())
    return (-big / max(len(p.sizes), 1), abs(big - target), p.source)


def eligible(p: Placement, lo: int, hi: int, min_big_share: float = 0.75) -> bool:
    big = int((p.sizes >= BIG_FACE).sum())
    return lo <= big <= hi and big >= min_big_share * len(p.sizes)


def compose_frames(data: Path) -> tuple[Frame, Frame]:
    """The 640x480 single-photo frame and the 1920x1080 tiled frame, chosen from the gt file."""
    images_dir = data / VAL_IMAGES
    gts = [g for g in read_val_gt(data / VAL_GT) if (images_dir / g.path).is_file() and len(g.boxes)]
    if not gts:
        raise RuntimeError(f"no val images listed in {data / VAL_GT} were found under {images_dir}")
    sizes = {g.path: image_size(images_dir / g.path) for g in gts}

    # Small frame: one photo, 4-8 faces of at least 20 px, mostly big faces.
    small = [place(g, sizes[g.path], (0, 0), SMALL_FRAME) for g in gts]
    small = sorted((p for p in small if eligible(p, 4, 8)), key=lambda p: rank_key(p, 6))
    if not small:
        raise RuntimeError("no val photo has 4-8 faces of >= 20 px in a 640x480 crop")
    chosen = small[0]

    # Large frame: six 640x540 tiles, 3-6 big faces each, taking events in turn for variety.
    cols, rows = TILES
    tw, th = LARGE_FRAME[0] // cols, LARGE_FRAME[1] // rows
    by_event: dict[str, list[Placement]] = {}
    for g in gts:
        if g.path == chosen.source:
            continue
        p = place(g, sizes[g.path], (0, 0), (tw, th))
        if eligible(p, 3, 6):
            by_event.setdefault(g.path.split("/")[0], []).append(p)
    queues = [sorted(v, key=lambda p: rank_key(p, 4.5)) for _, v in sorted(by_event.items())]
    picks: list[str] = []
    while len(picks) < cols * rows and any(queues):
        for q in queues:
            if q and len(picks) < cols * rows:
                picks.append(q.pop(0).source)
    if len(picks) < cols * rows:
        raise RuntimeError(f"only {len(picks)} val photos fit a 640x540 tile with 3-6 faces of >= 20 px")
    gt_by_path = {g.path: g for g in gts}
    tiles = [place(gt_by_path[s], sizes[s], ((k % cols) * tw, (k // cols) * th), (tw, th)) for k, s in enumerate(picks)]

    return (Frame("640x480", render(SMALL_FRAME, [chosen], images_dir), [chosen]),
            Frame("1920x1080", render(LARGE_FRAME, tiles, images_dir), tiles))


def compose_batch(data: Path, n: int = BATCH) -> list[np.ndarray]:
    """The first n val photos with faces, in ground-truth file order, each fitted to 640x480."""
    images_dir = data / VAL_IMAGES
    gts = [g for g in read_val_gt(data / VAL_GT) if (images_dir / g.path).is_file() and len(g.boxes)][:n]
    if len(gts) < n:
        raise RuntimeError(f"only {len(gts)} val photos with faces found under {images_dir}; {n} needed")
    return [render(SMALL_FRAME, [place(g, image_size(images_dir / g.path), (0, 0), SMALL_FRAME)], images_dir)
            for g in gts]


def throughput(frames: list[np.ndarray], threads: list[int], args: argparse.Namespace) -> list[dict]:
    """Frames per second over the whole list: openmtcnn's detect(list) and YuNet frame by frame."""
    import openmtcnn

    rows = []
    for t in threads:
        cv2.setNumThreads(t)
        h, w = frames[0].shape[:2]
        yunet = cv2.FaceDetectorYN.create(str(args.data / YUNET_FILE), "", (w, h), score_threshold=args.yunet_score)
        bgr = [np.ascontiguousarray(f[:, :, ::-1]) for f in frames]
        runs = {OPENMTCNN[b]: partial(openmtcnn.MTCNN(threads=t, backend=b).detect, frames) for b in args.backends}
        runs["yunet"] = lambda: [yunet.detect(b) for b in bgr]
        for name, run in runs.items():
            samples = time_calls(run, 1, max(3, args.repeats // 4))
            fps = len(frames) / (float(np.median(samples)) / 1e3)
            rows.append({"detector": name, "threads": t, "frames": len(frames), **summarise(samples),
                         "frames_per_s": round(fps, 1)})
    return rows


# ---- detectors ------------------------------------------------------------------------------

@dataclass
class Case:
    """One timed configuration."""

    detector: str
    frame: str
    threads: int
    min_face_size: int | None  # None where the detector has no such setting (YuNet)


Runner = Callable[[], Boxes]
OPENMTCNN = {"onnx": "openmtcnn", "ncnn": "openmtcnn-ncnn"}  # detector name per backend


def openmtcnn_runner(frame: Frame, threads: int, min_face: int, backend: str = "onnx") -> Runner:
    import openmtcnn
    det = openmtcnn.MTCNN(min_face_size=min_face, threads=threads, backend=backend)
    rgb = frame.image
    return lambda: det.detect(rgb).boxes


def yunet_runner(frame: Frame, model: Path, score: float) -> Runner:
    h, w = frame.image.shape[:2]
    det = cv2.FaceDetectorYN.create(str(model), "", (w, h), score_threshold=score)
    bgr = np.ascontiguousarray(frame.image[:, :, ::-1])

    def run() -> Boxes:
        faces = det.detect(bgr)[1]
        if faces is None:
            return np.zeros((0, 4))
        return np.concatenate([faces[:, :2], faces[:, :2] + faces[:, 2:4]], axis=1)
    return run


def facenet_runner(frame: Frame, threads: int, min_face: int) -> Runner:
    import torch
    from facenet_pytorch import MTCNN as FacenetMTCNN
    torch.set_num_threads(threads)
    det = FacenetMTCNN(min_face_size=min_face, keep_all=True, device="cpu")
    rgb = frame.image

    def run() -> Boxes:
        with torch.inference_mode():
            boxes = det.detect(rgb)[0]
        return np.zeros((0, 4)) if boxes is None else np.asarray(boxes, np.float64).reshape(-1, 4)
    return run


def mtcnn_pkg_runner(frame: Frame, threads: int, min_face: int) -> Runner:
    import tensorflow as tf
    from mtcnn import MTCNN as PkgMTCNN
    if tf.config.threading.get_intra_op_parallelism_threads() != threads:
        try:
            tf.config.threading.set_intra_op_parallelism_threads(threads)
            tf.config.threading.set_inter_op_parallelism_threads(1)
        except RuntimeError as e:
            raise Skip(f"TensorFlow threads can only be set once per process ({e})") from None
    if "min_face_size" in inspect.signature(PkgMTCNN.__init__).parameters:  # mtcnn < 1.0
        det, kwargs = PkgMTCNN(min_face_size=min_face), {}
    else:  # mtcnn >= 1.0 takes it per call
        det, kwargs = PkgMTCNN(), {"min_face_size": min_face}
    rgb = frame.image

    def run() -> Boxes:
        faces = det.detect_faces(rgb, **kwargs)
        xywh = np.array([f["box"] for f in faces], np.float64).reshape(-1, 4)
        return np.concatenate([xywh[:, :2], xywh[:, :2] + xywh[:, 2:]], axis=1)
    return run


PEERS = {"facenet_pytorch": ("facenet_pytorch", facenet_runner), "mtcnn": ("mtcnn", mtcnn_pkg_runner)}


def peer_available(module: str) -> bool:
    try:
        importlib.import_module(module)
        return True
    except Exception:  # noqa: BLE001 - a broken install is as good as absent here
        return False


# ---- timing and scoring ---------------------------------------------------------------------

def matched(det: Boxes, gt: Boxes, thr: float = MATCH_IOU) -> int:
    """Greedy one-to-one matches of detections (in the detector's order) to gt boxes at IoU >= thr."""
    if len(det) == 0 or len(gt) == 0:
        return 0
    iou, free, hits = iou_matrix(np.asarray(det, np.float64), gt), np.ones(len(gt), bool), 0
    for row in iou:
        row = np.where(free, row, -1)
        j = int(row.argmax())
        if row[j] >= thr:
            free[j], hits = False, hits + 1
    return hits


def time_runner(run: Runner, warmup: int, repeats: int) -> tuple[list[float], Boxes]:
    """Per-call milliseconds (openmtcnn's own timing loop), and the boxes of one more call."""
    return time_calls(run, warmup, repeats), run()


def build_runner(case: Case, frame: Frame, args: argparse.Namespace) -> Runner:
    """Set every library's thread count for this case, then build the detector."""
    cv2.setNumThreads(case.threads)  # OpenCV work inside all detectors (openmtcnn's pyramid, YuNet)
    if case.detector in OPENMTCNN.values():
        backend = next(b for b, name in OPENMTCNN.items() if name == case.detector)
        return openmtcnn_runner(frame, case.threads, case.min_face_size, backend)
    if case.detector == "yunet":
        return yunet_runner(frame, args.data / YUNET_FILE, args.yunet_score)
    return PEERS[case.detector][1](frame, case.threads, case.min_face_size)


def run_case(case: Case, frame: Frame, args: argparse.Namespace) -> dict:
    row = {"detector": case.detector, "frame": case.frame, "threads": case.threads,
           "min_face_size": case.min_face_size}
    try:
        run = build_runner(case, frame, args)
        samples, boxes = time_runner(run, args.warmup, args.repeats)
    except Skip as e:
        return {**row, "status": f"skipped: {e}"}
    except Exception as e:  # noqa: BLE001 - a failing peer must not sink the whole run
        if case.detector in ("openmtcnn", "yunet"):  # the default backend and the yardstick must run
            raise
        return {**row, "status": f"error: {type(e).__name__}: {e}"}
    return {**row, "status": "ok", **summarise(samples), "faces": int(len(boxes)),
            "matched_gt": matched(boxes, frame.gt_boxes), "samples_ms": [round(s, 3) for s in samples]}


def ratios(results: list[dict]) -> list[dict]:
    """openmtcnn median / YuNet median for each frame, thread count and min face size."""
    yunet = {(r["frame"], r["threads"]): r["median_ms"] for r in results
             if r["detector"] == "yunet" and r["status"] == "ok"}
    out = []
    for r in results:
        if r["detector"] in OPENMTCNN.values() and r["status"] == "ok" and (r["frame"], r["threads"]) in yunet:
            y = yunet[(r["frame"], r["threads"])]
            out.append({"detector": r["detector"], "frame": r["frame"], "threads": r["threads"], "min_face_size": r["min_face_size"],
                        "openmtcnn_median_ms": r["median_ms"], "yunet_median_ms": y,
                        "ratio": round(r["median_ms"] / y, 3)})
    return out


# ---- reporting ------------------------------------------------------------------------------

def version_of(module: str) -> str | None:
    try:
        return getattr(importlib.import_module(module), "__version__", "unknown")
    except Exception:  # noqa: BLE001
        return None


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def git_commit(root: Path) -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def machine_info() -> dict:
    import onnxruntime as ort
    affinity = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
    return {
        "cpu_model": cpu_model(), "nproc": os.cpu_count(), "cpus_usable": affinity,
        "load_avg_at_start": [round(x, 2) for x in os.getloadavg()] if hasattr(os, "getloadavg") else None,
        "platform": platform.platform(), "python": platform.python_version(),
        "numpy": np.__version__, "onnxruntime": ort.__version__, "opencv": cv2.__version__,
        "onnxruntime_providers": ort.get_available_providers(),
        "openmtcnn": version_of("openmtcnn"),
        "openmtcnn_git_commit": git_commit(Path(__file__).resolve().parent.parent),
    }


def print_table(results: list[dict], ratio_rows: list[dict], frames: dict[str, Frame]) -> None:
    ratio = {(r["detector"], r["frame"], r["threads"], r["min_face_size"]): r["ratio"] for r in ratio_rows}
    head = f"{'frame':<10} {'thr':>3}  {'detector':<16} {'min':>4} {'median':>9} {'p90':>9} {'min':>9} " \
           f"{'faces':>5} {'match/gt':>9} {'x YuNet':>8}"
    print(head)
    print("-" * len(head))
    for r in results:
        mf = "-" if r["min_face_size"] is None else str(r["min_face_size"])
        lead = f"{r['frame']:<10} {r['threads']:>3}  {r['detector']:<16} {mf:>4}"
        if r["status"] != "ok":
            print(f"{lead} {r['status']}")
            continue
        n_gt = len(frames[r["frame"]].gt_sizes)
        x = ratio.get((r["detector"], r["frame"], r["threads"], r["min_face_size"]))
        match = f"{r['matched_gt']}/{n_gt}"
        x_yunet = "" if x is None else f"{x:.2f}"
        print(f"{lead} {r['median_ms']:>9.1f} {r['p90_ms']:>9.1f} {r['min_ms']:>9.1f} {r['faces']:>5} "
              f"{match:>9} {x_yunet:>8}")
    print("times in ms; median, p90, min over the timed repeats; 'x YuNet' = openmtcnn median / YuNet median")


def plot(results: list[dict], frame_names: list[str], path: Path) -> None:
    """Grouped bars of medians: one panel per frame, groups by thread count, a bar per detector setting."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ok = [r for r in results if r["status"] == "ok"]

    def label(r: dict) -> str:
        return r["detector"] + ("" if r["min_face_size"] is None else f" min {r['min_face_size']}")

    labels = list(dict.fromkeys(label(r) for r in ok))
    fig, axes = plt.subplots(1, len(frame_names), figsize=(6 * len(frame_names), 4.5), squeeze=False)
    for ax, name in zip(axes[0], frame_names):
        rows = [r for r in ok if r["frame"] == name]
        threads = sorted({r["threads"] for r in rows})
        width = 0.8 / max(len(labels), 1)
        for k, lab in enumerate(labels):
            vals = [next((r["median_ms"] for r in rows if r["threads"] == t and label(r) == lab), np.nan)
                    for t in threads]
            ax.bar(np.arange(len(threads)) + (k - (len(labels) - 1) / 2) * width, vals, width, label=lab)
        ax.set_xticks(np.arange(len(threads)), [f"{t} thread{'s' if t > 1 else ''}" for t in threads])
        ax.set_title(name)
        ax.set_ylabel("median latency (ms)")
        ax.grid(axis="y", alpha=0.3)
    axes[0][0].legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


# ---- main -----------------------------------------------------------------------------------

def int_list(text: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"expected positive integers, got {text!r}")
    return values


def backend_list(text: str) -> list[str]:
    values = [v.strip() for v in text.split(",") if v.strip()]
    if not values or set(values) - set(OPENMTCNN):
        raise argparse.ArgumentTypeError(f"expected backends from {sorted(OPENMTCNN)}, got {text!r}")
    return values


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--data", type=Path, default=Path(os.environ.get("OPENMTCNN_DATA", "../shared/data")),
                   help="shared data folder with widerface/ and peers/yunet/ (or $OPENMTCNN_DATA)")
    p.add_argument("--out", type=Path, default=Path("runs/bench.json"), help="JSON report")
    p.add_argument("--plot", type=Path, default=None, help="also write a PNG bar chart of medians here")
    p.add_argument("--repeats", type=int, default=20, help="timed calls per case")
    p.add_argument("--warmup", type=int, default=3, help="untimed calls per case before timing")
    p.add_argument("--threads", type=int_list, default="1,2", help="thread counts, comma-separated")
    p.add_argument("--min-faces", type=int_list, default="20,40", help="MTCNN min face sizes, comma-separated")
    p.add_argument("--yunet-score", type=float, default=0.9, help="YuNet score threshold (OpenCV default 0.9)")
    p.add_argument("--backends", type=backend_list, default="onnx", help="openmtcnn backends, comma-separated "
                   "(onnx, ncnn); each is timed in the same run")
    p.add_argument("--no-peers", action="store_true", help="skip facenet_pytorch and mtcnn even if installed")
    p.add_argument("--save-frames", type=Path, default=None, help="write the two test frames as PNGs to this folder")
    args = p.parse_args(argv)
    if args.repeats < 1 or args.warmup < 0:
        p.error("--repeats must be >= 1 and --warmup >= 0")
    return args


def check_data(data: Path) -> str | None:
    """Why the data folder cannot be used, or None when it can."""
    hint = "pass --data (or set $OPENMTCNN_DATA) to the shared data folder, e.g. ../shared/data"
    if not data.is_dir():
        return f"data folder not found: {data}; {hint}"
    for rel in (VAL_IMAGES, VAL_GT, YUNET_FILE):
        if not (data / rel).exists():
            return f"{data / rel} is missing; the data folder must hold the WIDER FACE val subset and YuNet ({hint})"
    return None


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    problem = check_data(args.data)
    if problem:
        print(f"bench_latency: error: {problem}", file=sys.stderr)
        return 2
    if hasattr(cv2, "utils") and hasattr(cv2.utils, "logging"):
        cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)

    small, large = compose_frames(args.data)
    frames = {f.name: f for f in (small, large)}
    for f in frames.values():
        d = f.describe()
        print(f"frame {f.name}: {d['gt_faces']} gt faces ({d['gt_faces_ge_20px']} >= 20 px, "
              f"{d['gt_faces_ge_40px']} >= 40 px) from " + ", ".join(s["file"] for s in d["sources"]))
        if args.save_frames:
            args.save_frames.mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(args.save_frames / f"frame_{f.name}.png"), cv2.cvtColor(f.image, cv2.COLOR_RGB2BGR))

    peers = {}
    for name, (module, _) in PEERS.items():
        peers[name] = "disabled" if args.no_peers else ("available" if peer_available(module) else "unavailable")

    cases = []
    for name in frames:
        for t in args.threads:
            cases.append(Case("yunet", name, t, None))
            cases += [Case(OPENMTCNN[b], name, t, m) for b in args.backends for m in args.min_faces]
            cases += [Case(p, name, t, m) for p, s in peers.items() if s == "available" for m in args.min_faces]

    results, started = [], time.perf_counter()
    for k, case in enumerate(cases, 1):
        print(f"[{k}/{len(cases)}] {case.detector} {case.frame} threads={case.threads} "
              f"min_face={case.min_face_size}", file=sys.stderr, flush=True)
        results.append(run_case(case, frames[case.frame], args))
    ratio_rows = ratios(results)
    print(f"[throughput] {BATCH} frames of 640x480", file=sys.stderr, flush=True)
    batch_rows = throughput(compose_batch(args.data), args.threads, args)

    report = {
        "benchmark": "openmtcnn detection latency",
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "machine": machine_info(),
        "settings": {
            "repeats": args.repeats, "warmup": args.warmup, "threads": args.threads,
            "min_face_sizes": args.min_faces, "data": str(args.data.resolve()),
            "timer": "time.perf_counter_ns around one detect call on a decoded uint8 image already in the "
                     "detector's colour order (RGB for MTCNNs, BGR for YuNet); model loading excluded",
            "threads_control": "cv2.setNumThreads(threads) for every case; openmtcnn MTCNN(threads=...) sets "
                               "ONNX Runtime intra-op threads; torch.set_num_threads / TensorFlow intra-op "
                               "threads for the peers",
            "percentiles": "numpy median and 90th percentile (linear interpolation)",
            "yunet": {"model": YUNET_FILE, "score_threshold": args.yunet_score,
                      "nms_threshold": 0.3, "top_k": 5000, "input_size": "frame size"},
            "openmtcnn": {"weights": "published", "backends": args.backends, "device": "cpu",
                          "other_settings": "package defaults"},
            "matched_gt": f"greedy one-to-one matches of detections to gt boxes (all valid gt faces in the "
                          f"frame) at IoU >= {MATCH_IOU}",
        },
        "frames": {name: f.describe() for name, f in frames.items()},
        "peers": peers,
        "results": results,
        "ratios_openmtcnn_over_yunet": ratio_rows,
        "throughput": batch_rows,
        "wall_s": round(time.perf_counter() - started, 1),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")

    print()
    print_table(results, ratio_rows, frames)
    print(f"\nthroughput, {BATCH} val photos fitted to 640x480 (openmtcnn: one detect(list) call)")
    for r in batch_rows:
        print(f"  {r['detector']:<10} threads {r['threads']}: {r['frames_per_s']:>6.1f} frames/s "
              f"({r['median_ms']:.0f} ms per {r['frames']} frames)")
    print("peers: " + ", ".join(f"{name} {state}" for name, state in peers.items()))
    print(f"\nwrote {args.out}")
    if args.plot:
        plot(results, list(frames), args.plot)
        print(f"wrote {args.plot}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
