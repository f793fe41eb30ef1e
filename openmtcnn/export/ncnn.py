"""``openmtcnn export ncnn``: a weight set's three nets as ncnn float and int8 ``.param``/``.bin``.

The folder is the float nets (converted with pnnx) and their manifest.json, with the command; its
``int8/`` holds them quantised by ncnn's own method (``export.ncnn_int8``), calibrated on real
pyramid levels and crops. ``MTCNN(weights=folder)`` runs either on ncnn.
"""
from __future__ import annotations

import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from openmtcnn import weights as store
from openmtcnn.fileio import atomic_write_bytes, write_json
from openmtcnn.geometry import STAGES
from openmtcnn.weights import ncnn as folders

SAMPLE = Path(__file__).resolve().parents[1] / "assets" / "astronaut.png"


@dataclass
class NcnnExportConfig:
    """What to export: ``weights`` (any set; an int8 ONNX set exports the float set it was made from),
    the folder, and the int8 calibration photos (default: the bundled sample)."""

    weights: str = store.DEFAULT
    out: str | os.PathLike = "ncnn"
    int8: bool = True
    calib: Sequence[str | os.PathLike] = field(default_factory=lambda: [SAMPLE])
    threads: int | None = 1
    command: str = ""
    show_progress: bool = True


def float_set(weights: str | os.PathLike) -> str:
    """The float weight set whose nets an export converts: the set itself, or an int8 set's ``float_weights``."""
    if folders.is_ncnn(weights):
        raise ValueError(f"weights {str(weights)!r} are an ncnn folder already; export the weight set it came from")
    info = store.manifest(weights)
    return str(info["float_weights"]) if info.get("int8") else str(weights)


def export_ncnn(cfg: NcnnExportConfig) -> Path:
    """Write the float folder (and ``int8/``) for ``cfg``; returns the folder.

    The float nets are the ncnn backend's cached pnnx conversion of the set (made now if missing)."""
    from openmtcnn.runtime.ncnn import converted

    source, out = float_set(cfg.weights), Path(cfg.out)
    if (out / "manifest.json").is_file() and not folders.is_ncnn(out):
        raise ValueError(f"{out} holds another kind of weight set; choose an empty or ncnn folder for --out")
    made_by = {"made_by": cfg.command} if cfg.command else {}
    src, info = folders.check_folder(converted(source))
    for stage in STAGES:
        for path in folders.stage_files(src, stage):
            atomic_write_bytes(out / path.name, path.read_bytes())
    if source != str(cfg.weights):
        info["note"] = f"{cfg.weights} is int8 ONNX: these are the nets of its float set {source}"
    folders.write_manifest(out, {**info, "source": f"weight set {cfg.weights}", **made_by})
    if cfg.int8:
        quantise_folder(out, out / "int8", source, cfg.calib, cfg.threads, cfg.show_progress, made_by)
    elif (out / "int8").is_dir():
        shutil.rmtree(out / "int8")  # not left beside float nets it was not made from
    return out


def quantise_folder(src: Path, dest: Path, weights: str, images: Sequence, threads: int | None = 1,
                    show_progress: bool = True, extra: dict | None = None) -> Path:
    """``dest``: the float ncnn folder ``src`` in int8, calibrated on the inputs that the float cascade of
    ``weights`` gives its nets on ``images`` (every pyramid level; P-Net's and R-Net's crops)."""
    from openmtcnn.compress.quantize import calibration_batches
    from openmtcnn.export.ncnn_int8 import Calibrator, parse_param, quantised, read_arrays

    _, info = folders.check_folder(src)
    prepare = lambda chw: (chw - np.float32(folders.MEAN)) * np.float32(folders.NORM)  # noqa: E731
    layers, cals = {}, {}
    for stage in STAGES:
        param, binary = folders.stage_files(src, stage)
        layers[stage] = parse_param(param.read_text())
        read_arrays(layers[stage], binary.read_bytes())
        cals[stage] = Calibrator(param, binary, layers[stage], folders.INPUT_BLOB, prepare)
    for histogram in (False, True):  # ncnn2table: the maxima, then the histograms, of the same inputs
        for stage, batch in calibration_batches(weights, images, threads=threads,
                                                show_progress=show_progress and not histogram):
            cals[stage].add(batch, histogram)
    dest.mkdir(parents=True, exist_ok=True)
    tables = {}
    for stage in STAGES:
        text, data, tables[stage] = quantised(layers[stage], cals[stage].scales())
        param, binary = folders.stage_files(dest, stage)
        atomic_write_bytes(binary, data)
        atomic_write_bytes(param, text.encode())
    calibration = {"method": "kl (ncnn2table's, reimplemented: the wheels ship no ncnn2table/ncnn2int8)",
                   "images": len(images), "first_image": Path(str(images[0])).name if len(images) else None}
    base = {k: info[k] for k in ("name", "models", "source", "converter") if k in info}
    folders.write_manifest(dest, folders.folder_info(info["outputs"], base.pop("source"), "int8", **base,
                                                     calibration=calibration, **(extra or {})))
    write_json(dest / "table.json", tables)
    return dest
