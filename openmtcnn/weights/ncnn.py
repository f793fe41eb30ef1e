"""ncnn folders: a weight set's three nets as ncnn ``.param``/``.bin`` files and a manifest.json.

``openmtcnn export ncnn`` writes them (the float nets, and ``int8/``), and the ncnn backend converts a
weight set once into a cache folder of the same kind. Reading one needs no torch; converting needs
torch and pnnx (``weights.pnnx``).
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np

from openmtcnn import weights as store
from openmtcnn.geometry import STAGES

FORMAT = "ncnn"
VERSION = 1  # of the layout below; part of the cache key, so a change re-converts
# The nets take RGB CHW float images normalised as (pixel - MEAN) * NORM: ncnn's substract_mean_normalize.
MEAN, NORM = 127.5, 0.0078125
INPUT_BLOB = "in0"
OUTPUTS = ("out0", "out1", "out2")  # face probability, box offsets, landmarks (pnnx's names, in that order)


def is_ncnn(weights: str | os.PathLike) -> bool:
    """Whether a weight set name or folder is an ncnn folder (manifest ``"format": "ncnn"``)."""
    return store.manifest(weights).get("format") == FORMAT


def file_digest(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def stage_files(folder: Path, stage: str) -> tuple[Path, Path]:
    return folder / f"{stage}.param", folder / f"{stage}.bin"


def folder_info(stages: dict[str, list[str]], source: str, precision: str, **extra) -> dict:
    """The manifest of an ncnn folder: ``stages`` maps each stage to its output blob names."""
    return {"format": FORMAT, "version": VERSION, "precision": precision, "source": source,
            "input": {"blob": INPUT_BLOB, "layout": "CHW float32, RGB", "mean": MEAN, "norm": NORM},
            "outputs": stages, **extra}


def write_manifest(folder: Path, info: dict) -> Path:
    """Add the files' sizes and SHA-256 to ``info`` and write it as the folder's manifest.json (last)."""
    from openmtcnn.fileio import atomic_write_bytes

    info = dict(info, files={s: {p.name: {"bytes": p.stat().st_size, "sha256": file_digest(p)}
                                 for p in stage_files(folder, s)} for s in STAGES})
    return atomic_write_bytes(folder / "manifest.json", (json.dumps(info, indent=2) + "\n").encode())


def check_folder(weights: str | os.PathLike) -> tuple[Path, dict]:
    """(folder, manifest) of an ncnn folder whose files are all there and unchanged, else a WeightsError."""
    folder, info = store.weights_dir(weights), store.manifest(weights)
    for stage in STAGES:
        if stage not in info.get("outputs", {}):
            raise store.WeightsError(f"{folder / 'manifest.json'}: no outputs listed for {stage}; export the folder "
                                     "again (openmtcnn export ncnn)")
        for path in stage_files(folder, stage):
            want = info.get("files", {}).get(stage, {}).get(path.name, {}).get("sha256")
            if not path.is_file():
                raise store.WeightsError(f"{path}: missing; export the folder again (openmtcnn export ncnn)")
            if want != file_digest(path):
                raise store.WeightsError(f"{path}: not the file the manifest lists (damaged, or another stage's "
                                         "file); export the folder again (openmtcnn export ncnn)")
    return folder, info


def cache_root() -> Path:
    """Where converted weight sets are kept: $OPENMTCNN_CACHE, else $XDG_CACHE_HOME/openmtcnn or ~/.cache/openmtcnn."""
    if os.environ.get("OPENMTCNN_CACHE"):
        return Path(os.environ["OPENMTCNN_CACHE"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "openmtcnn"


def cached_folder(weights: str | os.PathLike) -> Path:
    """The cache folder of a weight set's float ncnn conversion, named by a digest of what it is made from
    (the nets' registry names and overrides, and the parameters' values: not the npz's zip timestamps)."""
    info = store.manifest(weights)
    key = hashlib.sha256(json.dumps([VERSION, info.get("models"), info.get("model_kwargs")], sort_keys=True).encode())
    for stage in STAGES:
        for name, value in sorted(store.load_state(weights, stage).items()):
            key.update(f"{stage}/{name}{value.dtype}{value.shape}".encode())
            key.update(np.ascontiguousarray(value).tobytes())
    return cache_root() / FORMAT / f"{store.weights_dir(weights).name}-{key.hexdigest()[:16]}"
