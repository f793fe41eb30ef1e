"""The whole training pipeline: samples -> P-Net -> mined samples -> R-Net -> mined samples -> O-Net.

Each stage's hard examples are what the stages trained before it propose on the training
pictures (``MTCNN.run(..., until=...)``), so no other net is in the loop. Every step resumes:
finished sample shards and epochs are not redone.
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable

import numpy as np

from openmtcnn.data import SampleConfig, SampleSet, facepoint_pictures, read_facepoint, read_wider
from openmtcnn.data.generate import generate_hard, generate_random
from openmtcnn.fileio import atomic_write_bytes
from openmtcnn.geometry import INPUT_SIZES as SIZES
from openmtcnn.geometry import STAGES
from openmtcnn.train.trainer import TrainConfig, train



@dataclass
class Sources:
    """Where the training data is: a WIDER FACE root and, for landmark samples, a CNN_FacePoint root."""

    wider: str | Path
    landmarks: str | Path | None = None
    landmark_boxes: bool = False  # also crop and mine around the CNN_FacePoint faces (as WIDER-style boxes)

    def __post_init__(self):
        root = Path(self.wider)
        if not self.wider_txt().is_file() or not self.wider_images().is_dir():
            raise FileNotFoundError(f"the WIDER FACE root must hold wider_face_split/wider_face_train_bbx_gt.txt "
                                    f"and WIDER_train/images: {root}")
        if self.landmarks is not None and not (Path(self.landmarks) / "trainImageList.txt").is_file():
            raise FileNotFoundError(f"the CNN_FacePoint root must hold trainImageList.txt: {self.landmarks}")
        if self.landmark_boxes and self.landmarks is None:
            raise ValueError("landmark_boxes needs the CNN_FacePoint root (landmarks)")

    def wider_txt(self) -> Path:
        return Path(self.wider) / "wider_face_split" / "wider_face_train_bbx_gt.txt"

    def wider_images(self) -> Path:
        return Path(self.wider) / "WIDER_train" / "images"

    def facepoint(self) -> tuple[Path | None, Path | None]:
        """The CNN_FacePoint train list and its images root (none: no landmark samples)."""
        return (None, None) if self.landmarks is None else (Path(self.landmarks) / "trainImageList.txt",
                                                            Path(self.landmarks))

    def extra(self) -> list:
        """CNN_FacePoint faces as extra pictures to crop and mine around, when asked."""
        return facepoint_pictures(read_facepoint(*self.facepoint())) if self.landmark_boxes else []


def proposer(weights: str, stage: str, threads: int | None = None) -> Callable[[list[np.ndarray]], list[np.ndarray]]:
    """Boxes ``stage``'s net is handed, for each of a list of pictures: P-Net's own candidates for P-Net
    data (its false alarms as hard negatives) and for R-Net data, P-Net then R-Net's for O-Net data
    (the list's pictures shared among the detector's workers)."""
    from openmtcnn import MTCNN

    detector = MTCNN(weights=weights, threads=threads, device="cpu")  # the same samples on every machine
    until = {"pnet": "pnet", "rnet": "pnet", "onet": "rnet"}[stage]
    return lambda images: [c.boxes for c in detector.run(images, until=until)]


def make_samples(stage: str, sources: Sources, out: str | Path, cfg: SampleConfig = SampleConfig(),
                 weights: str | None = None, random: bool = False, landmarks_only: bool = False) -> dict:
    """One stage's sample set in ``out/<size>/``: random crops for P-Net (or, given ``weights``, the
    candidates of their P-Net: hard negatives to join with the random set), hard examples of ``weights``
    for R-Net and O-Net (``random``: jittered squares around the faces instead, to join with a mined set;
    ``landmarks_only``: only the landmark samples, e.g. to retrain a landmark head, without mining)."""
    cfg = replace(cfg, size=SIZES[stage])
    lm_list, lm_images = sources.facepoint()
    if landmarks_only:  # the shards keep their indices, so the samples are those a mined set would hold
        if lm_list is None:
            raise ValueError("landmarks_only needs the CNN_FacePoint root (landmarks)")
        return generate_random(sources.wider_txt(), sources.wider_images(), lm_list, lm_images, out,
                               replace(cfg, negatives=0, near=0, attempts=0))
    if stage == "pnet" and weights is None:
        return generate_random(sources.wider_txt(), sources.wider_images(), lm_list, lm_images, out, cfg,
                               sources.extra())
    if random:  # positives and parts only
        return generate_random(sources.wider_txt(), sources.wider_images(), None, None, out,
                               replace(cfg, negatives=0, near=0), sources.extra())
    if weights is None:
        raise ValueError(f"{stage} samples are mined with trained earlier stages: give their weights")
    pictures = [(w.path, w.boxes) for w in read_wider(sources.wider_txt(), sources.wider_images())]
    return generate_hard(pictures, proposer(weights, stage), out, cfg, tag=f"{weights}:{stage}",
                         facepoint_list=lm_list, facepoint_images=lm_images, extra=sources.extra())


@dataclass
class PipelineConfig:
    """``train_all``'s settings: the data, how samples are made, and each stage's trainer settings."""

    sources: Sources
    samples: SampleConfig = field(default_factory=SampleConfig)
    train: dict[str, TrainConfig] = field(default_factory=lambda: {s: TrainConfig(stage=s) for s in STAGES})
    random: bool = False  # R-Net and O-Net also learn from jittered squares around the faces

    def __post_init__(self):
        if sorted(self.train) != sorted(STAGES) or any(self.train[s].stage != s for s in STAGES):
            raise ValueError(f"train must hold one TrainConfig per stage {STAGES}, each for its own stage")


def train_all(cfg: PipelineConfig, out: str | Path, resume: bool = True, extra_loss: Callable | None = None) -> dict:
    """Samples, training and mining for the three stages, then ``out/weights``: a weight set of the three nets.

    Returns (and writes to ``out/pipeline.json``) each stage's sample counts, seconds and final metrics.
    ``resume``: continue the stages' runs from their last checkpoints. ``extra_loss(stage)`` may give a
    loss term to add for a stage (e.g. distillation).
    """
    from openmtcnn.weights.trained import export_trained

    out = Path(out)
    checkpoints, report = {}, {}
    for stage in STAGES:
        t0 = time.perf_counter()
        weights = str(export_trained(checkpoints, out / f"weights_{stage}_mining")) if checkpoints else None
        summary = make_samples(stage, cfg.sources, out / "samples", cfg.samples, weights)
        data, counts = [out / "samples" / str(SIZES[stage])], {"samples": summary.get("counts")}
        if cfg.random and stage != "pnet":
            random = make_samples(stage, cfg.sources, out / "random", cfg.samples, random=True)
            counts["random_samples"] = random.get("counts")
            data.append(out / "random" / str(SIZES[stage]))
        t1 = time.perf_counter()
        result = train(SampleSet(*data), out / stage, cfg.train[stage], resume=resume,
                       extra_loss=extra_loss(stage) if extra_loss else None)
        checkpoints[stage] = out / stage / "best.pt"
        report[stage] = {**counts, "sample_seconds": round(t1 - t0, 1),
                         "train_seconds": round(time.perf_counter() - t1, 1),
                         "final": result["history"][-1] if result["history"] else None}
        print(json.dumps({stage: report[stage]}, indent=1))
    export_trained(checkpoints, out / "weights", note="openmtcnn train all")
    atomic_write_bytes(out / "pipeline.json", (json.dumps(report, indent=1) + "\n").encode())
    return report
