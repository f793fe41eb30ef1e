"""Writing sample sets: random crops for P-Net (or R/O-Net), landmark samples, and hard examples.

Work is split into shards by a fixed partition of the input lists (WIDER pictures first, then
CNN_FacePoint faces); shard k draws from ``np.random.default_rng([seed, k])``, so a shard's
data depend only on the settings and its inputs, whatever the number of workers and however
often the run was interrupted. Finished shards listed in the manifest are never redone.
"""
from __future__ import annotations

import hashlib
import multiprocessing
import sys
import time
from collections.abc import Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable

import cv2
import numpy as np

from openmtcnn.data.crops import Samples, face_samples, label_candidates
from openmtcnn.geometry import INPUT_SIZES
from openmtcnn.data.landmarks import landmark_samples
from openmtcnn.data.sources import (
    FacePoint,
    WiderImage,
    check_files,
    load_rgb,
    read_facepoint,
    read_wider,
    wider_frame,
)
from openmtcnn.data.store import open_manifest, record_shard, write_shard
from openmtcnn.progress import progress

SIZES = tuple(INPUT_SIZES.values())
LANDMARK_FRAMES = ("facepoint", "wider")


@dataclass(frozen=True)
class SampleConfig:
    """How a sample set is made: crop size, seed, shards, what is drawn per picture and per face, workers."""

    size: int = 12  # crop side: 12 (P-Net), 24 (R-Net) or 48 (O-Net)
    seed: int = 0
    limit: int | None = None  # only the first N entries of each list (quick runs)
    images_per_shard: int = 64
    faces_per_shard: int = 256
    # random crops, per WIDER picture: negatives anywhere, tries for a negative beside each face,
    # jittered squares around each face kept as positives or parts
    negatives: int = 50
    near: int = 5
    attempts: int = 20
    min_face: float = 20.0  # faces with a shorter longer side are not cropped around (random) or labelled (hard)
    min_crop: int = 12
    neg_ratio: float = 3.0  # hard examples: negatives kept per picture, at most this many times its positives
    # landmark samples, per CNN_FacePoint face: augmented copies, cut in the list's frame or WIDER's
    landmarks_per_face: int = 10
    flip_prob: float = 0.5
    rotate_prob: float = 0.5
    max_angle: float = 15.0
    landmark_frame: str = "facepoint"
    workers: int = 2  # processes (the shards' contents do not depend on it)
    verbose: bool = True

    def __post_init__(self):
        if self.size not in SIZES:
            raise ValueError(f"size must be one of {SIZES}, got {self.size!r}")
        if not self.neg_ratio > 0:
            raise ValueError(f"neg_ratio must be > 0, got {self.neg_ratio}")
        if self.landmark_frame not in LANDMARK_FRAMES:
            raise ValueError(f"landmark frame must be one of {LANDMARK_FRAMES}, got {self.landmark_frame!r}")
        if self.images_per_shard < 1 or self.faces_per_shard < 1:
            raise ValueError(f"shard sizes must be >= 1, got {self.images_per_shard} and {self.faces_per_shard}")

    def crops(self) -> dict:
        """The random-crop settings, as recorded in a manifest."""
        return {"negatives": self.negatives, "near": self.near, "attempts": self.attempts,
                "min_face": float(self.min_face), "min_crop": self.min_crop}

    def landmarks(self) -> dict:
        """The landmark augmentation settings, as recorded in a manifest."""
        return {"count": self.landmarks_per_face, "flip_prob": self.flip_prob, "rotate_prob": self.rotate_prob,
                "max_angle": float(self.max_angle)}


def _chunks(items: Sequence, per_shard: int) -> list[list]:
    if per_shard < 1:
        raise ValueError(f"shard sizes must be >= 1, got {per_shard}")
    return [list(items[i:i + per_shard]) for i in range(0, len(items), per_shard)]


def _worker_init() -> None:
    cv2.setNumThreads(1)  # the pool is the parallelism; OpenCV's own threads would only contend


def _make_shard(task: tuple) -> tuple[int, np.ndarray, int]:
    """Build and write one shard (runs in a worker); returns (index, kinds, pictures used)."""
    folder, index, source, items, size, seed, params = task
    rng = np.random.default_rng([seed, index])
    parts = []
    for item in items:
        image = load_rgb(item.path)
        if source == "wider":
            parts.append(face_samples(image, item.boxes, size, rng, **params))
        else:
            parts.append(landmark_samples(image, item.box, item.points, size, rng, **params))
    samples = Samples.concat(parts, size)
    write_shard(folder, index, samples)
    return index, samples.kind, len(items)


def _run(folder: Path, manifest: dict, tasks: list[tuple], workers: int,
         make: Callable[[tuple], tuple[int, np.ndarray, int]] = _make_shard, show: bool = True) -> None:
    """Run the shards not yet in the manifest, recording each as it finishes, in shard order."""
    done = {s["index"] for s in manifest["shards"]}
    pending = [t for t in tasks if t[1] not in done]
    if not pending:
        return
    # spawn, not fork: a child forked while OpenCV's thread pool holds a lock can hang in cv2 calls.
    # (Scripts that call this at top level need the usual ``if __name__ == "__main__":`` guard; without
    # it the workers fail to start and the executor raises BrokenProcessPool instead of hanging.)
    pool = None
    if workers > 1 and len(pending) > 1:
        pool = ProcessPoolExecutor(min(workers, len(pending)), mp_context=multiprocessing.get_context("spawn"),
                                   initializer=_worker_init)
    try:
        results: Iterable = pool.map(make, pending) if pool else map(make, pending)  # in shard order
        for index, kind, used in progress(results, desc=f"{folder.name}px shards", total=len(pending), enable=show):
            record_shard(folder, manifest, index, kind, used)
    finally:
        if pool:
            pool.shutdown(cancel_futures=True)


def _summary(folder: Path, manifest: dict, start: float, verbose: bool) -> dict:
    """Counts per kind, shards, disk use and time of a finished run (printed when ``verbose``)."""
    files = [p for s in manifest["shards"] for p in (folder / s["name"]).glob("*.npy")]
    out = {"folder": str(folder), "counts": dict(manifest["counts"]), "total": sum(manifest["counts"].values()),
           "shards": len(manifest["shards"]), "complete": manifest["complete"],
           "bytes": sum(p.stat().st_size for p in files), "seconds": round(time.perf_counter() - start, 2)}
    if verbose:
        counts = ", ".join(f"{k} {v}" for k, v in out["counts"].items())
        print(f"{folder}: {out['total']} samples ({counts}) in {out['shards']} shards, "
              f"{out['bytes'] / 2**20:.1f} MiB, {out['seconds']:.1f} s", file=sys.stderr)
    return out


def _landmark_plan(facepoint_list, facepoint_images, cfg: SampleConfig, settings: dict) -> list[list[FacePoint]]:
    """CNN_FacePoint faces in shards (none without a list), and their settings recorded.

    ``cfg.landmark_frame``: crop around the list's own boxes ("facepoint", brows to mouth) or around
    those boxes moved to WIDER's convention ("wider"), the boxes the cascade hands O-Net at test time.
    """
    if facepoint_list is None:
        settings.update(facepoint_list=None, facepoint_images=None)
        return []
    faces = read_facepoint(facepoint_list, facepoint_images)[:cfg.limit]
    check_files([f.path for f in faces], "CNN_FacePoint images")
    settings.update(facepoint_list=str(Path(facepoint_list).resolve()),
                    facepoint_images=str(Path(facepoint_images).resolve()), faces_per_shard=cfg.faces_per_shard,
                    landmarks=cfg.landmarks())
    if cfg.landmark_frame != "facepoint":  # recorded only when moved: sets made before stay resumable as they were
        settings.update(landmark_frame=cfg.landmark_frame)
        faces = wider_frame(faces)
    return _chunks(faces, cfg.faces_per_shard)


def generate_random(wider_txt: str | Path, wider_images: str | Path, facepoint_list: str | Path | None,
                    facepoint_images: str | Path | None, out: str | Path, cfg: SampleConfig = SampleConfig(),
                    extra: Sequence[WiderImage] = ()) -> dict:
    """Random-crop sample set ``<out>/<cfg.size>/`` from WIDER FACE boxes and CNN_FacePoint landmarks.

    Per WIDER picture: ``cfg.negatives`` random negatives; per face of longer side >= ``cfg.min_face``,
    ``cfg.near`` tries for a negative beside it and ``cfg.attempts`` jittered squares kept as positives
    or parts. Per CNN_FacePoint face: up to ``cfg.landmarks_per_face`` augmented landmark samples.
    ``extra``: more pictures with their face boxes, cropped like the WIDER ones (e.g.
    ``facepoint_pictures``). Resumes an interrupted run with the same settings; returns the
    summary (counts per kind, shards, bytes, seconds).
    """
    start = time.perf_counter()
    folder = Path(out) / str(cfg.size)
    extra = list(extra)[:cfg.limit]
    pictures = read_wider(wider_txt, wider_images)[:cfg.limit] + extra
    check_files([p.path for p in pictures], "WIDER FACE images")
    settings = {"method": "random", "size": cfg.size, "seed": cfg.seed, "limit": cfg.limit,
                "wider_txt": str(Path(wider_txt).resolve()), "wider_images": str(Path(wider_images).resolve()),
                "images_per_shard": cfg.images_per_shard, "crops": cfg.crops()}
    if extra:  # recorded only when used: sets made without stay resumable as they were
        settings.update(extra_pictures=len(extra), extra_digest=_digest(extra))
    face_chunks = _landmark_plan(facepoint_list, facepoint_images, cfg, settings)
    plan = [("wider", c, cfg.crops()) for c in _chunks(pictures, cfg.images_per_shard)]
    plan += [("facepoint", c, cfg.landmarks()) for c in face_chunks]
    manifest = open_manifest(folder, settings, len(plan))
    tasks = [(folder, k, source, items, cfg.size, cfg.seed, params) for k, (source, items, params) in enumerate(plan)]
    _run(folder, manifest, tasks, cfg.workers, show=cfg.verbose)
    return _summary(folder, manifest, start, cfg.verbose)


def generate_pnet(wider_txt: str | Path, wider_images: str | Path, facepoint_list: str | Path | None,
                  facepoint_images: str | Path | None, out: str | Path, cfg: SampleConfig = SampleConfig(),
                  extra: Sequence[WiderImage] = ()) -> dict:
    """P-Net training set ``<out>/12/``: the paper's random crops plus landmark samples (see generate_random)."""
    return generate_random(wider_txt, wider_images, facepoint_list, facepoint_images, out, replace(cfg, size=12), extra)


def _digest(items: Sequence[tuple[str | Path, np.ndarray]]) -> str:
    """Fingerprint of the pictures and ground truth of a hard-example run (resumes must match it)."""
    h = hashlib.sha1()
    for path, gts in items:
        h.update(str(path).encode())
        h.update(np.asarray(gts, np.float64).reshape(-1, 4).tobytes())
    return h.hexdigest()


def generate_hard(images_and_gts: Sequence[tuple[str | Path, np.ndarray]],
                  propose: Callable[[list[np.ndarray]], list[np.ndarray]], out: str | Path, cfg: SampleConfig,
                  tag: str = "", facepoint_list: str | Path | None = None,
                  facepoint_images: str | Path | None = None, extra: Sequence[WiderImage] = ()) -> dict:
    """Hard-example sample set ``<out>/<cfg.size>/`` from boxes an earlier stage proposes.

    ``images_and_gts``: (picture path, (N, 4) face boxes x1 y1 x2 y2) pairs, e.g. ``read_wider``'s
    output. ``propose(rgbs) -> [(N, 4) boxes per picture]`` is called once a shard with its pictures,
    in this process (it usually runs the trained nets, which share a list's pictures among their
    workers); the candidates are labelled with ``label_candidates``,
    negatives capped at ``cfg.neg_ratio`` times the positives of the picture. With a
    CNN_FacePoint list, landmark samples are added (in ``cfg.workers`` processes). ``tag`` is
    recorded in the manifest: change it when the proposer changes, so that a resume cannot
    mix candidates of two models. ``extra`` pictures are mined too (``cfg.limit`` applies to each list).
    """
    start = time.perf_counter()
    size, seed, min_face, neg_ratio = cfg.size, cfg.seed, float(cfg.min_face), float(cfg.neg_ratio)
    folder = Path(out) / str(size)
    pictures = [WiderImage(Path(p), np.asarray(g, np.float64).reshape(-1, 4))
                for p, g in [*images_and_gts[:cfg.limit], *list(extra)[:cfg.limit]]]
    check_files([p.path for p in pictures], "images")
    settings = {"method": "hard", "size": size, "seed": seed, "limit": cfg.limit, "tag": tag, "images": len(pictures),
                "images_digest": _digest(pictures), "images_per_shard": cfg.images_per_shard, "neg_ratio": neg_ratio,
                "min_face": min_face}
    face_chunks = _landmark_plan(facepoint_list, facepoint_images, cfg, settings)
    hard = _chunks(pictures, cfg.images_per_shard)
    manifest = open_manifest(folder, settings, len(hard) + len(face_chunks))

    def mine(task: tuple) -> tuple[int, np.ndarray, int]:
        """One shard of hard examples, in this process (the proposer is not sent to workers)."""
        index, items = task[1], task[3]
        rng = np.random.default_rng([seed, index])
        images = [load_rgb(item.path) for item in items]
        proposed = propose(images)
        parts = [label_candidates(image, np.asarray(boxes, np.float64).reshape(-1, 4), item.boxes, size, min_face,
                                  neg_ratio, rng) for image, boxes, item in zip(images, proposed, items)]
        samples = Samples.concat(parts, size)
        write_shard(folder, index, samples)
        return index, samples.kind, len(items)

    _run(folder, manifest, [(folder, k, "hard", c, size, seed, None) for k, c in enumerate(hard)], 1, mine, cfg.verbose)
    marks = [(folder, len(hard) + k, "facepoint", c, size, seed, cfg.landmarks()) for k, c in enumerate(face_chunks)]
    _run(folder, manifest, marks, cfg.workers, show=cfg.verbose)
    return _summary(folder, manifest, start, cfg.verbose)

