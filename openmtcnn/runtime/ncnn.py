"""A net on ncnn (``backend="ncnn"``), the inference framework MTCNN runs on in mobile apps.

Weights: an ncnn folder (``openmtcnn export ncnn``), or any float weight set, converted with pnnx on
first use and kept in ``weights.ncnn.cache_root()``. ncnn has no batch axis: crops run one by one.
"""
from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from openmtcnn import weights as store
from openmtcnn.geometry import STAGES
from openmtcnn.weights import ncnn as folders

INSTALL = "pip install 'openmtcnn[ncnn]'"


def import_ncnn():
    try:
        import ncnn
    except ImportError as e:
        raise ImportError(f"backend 'ncnn' needs the ncnn package: {INSTALL}") from e
    return ncnn


@dataclass(frozen=True)
class NcnnOptions:
    """How ncnn runs a net. fp16 storage and arithmetic (ncnn's default, fast on ARM) round the float
    nets past 1e-4 of ONNX Runtime's answers, so they are off unless asked for."""

    threads: int | None = None  # None: ncnn's default (the big cores)
    fp16: bool = False


class NcnnNet:
    """``net(batch)`` -> tuple of NumPy outputs (prob, box[, landmarks]), as ``OrtNet``: batch N x 3 x H x W, 0-255."""

    def __init__(self, param: Path, binary: Path, outputs: list[str], options: NcnnOptions = NcnnOptions(),
                 stage: str | None = None):
        ncnn = import_ncnn()
        self.net, self.outputs, self.stage = ncnn.Net(), list(outputs), stage
        opt = self.net.opt
        opt.use_vulkan_compute = False
        opt.use_fp16_storage = opt.use_fp16_packed = opt.use_fp16_arithmetic = options.fp16
        if options.threads:
            opt.num_threads = int(options.threads)
        if self.net.load_param(str(param)) != 0 or self.net.load_model(str(binary)) != 0:
            raise store.WeightsError(f"{param}: ncnn cannot load it (or {Path(binary).name}); export the folder again "
                                     "(openmtcnn export ncnn)")
        self.mat = ncnn.Mat

    def __call__(self, batch: np.ndarray) -> tuple[np.ndarray, ...]:
        x = np.ascontiguousarray((np.asarray(batch, np.float32) - np.float32(folders.MEAN)) * np.float32(folders.NORM))
        per_item = []
        for image in x:  # ncnn.Mat reads the C-ordered array in place: it must outlive the extractor
            ex = self.net.create_extractor()
            ex.input(folders.INPUT_BLOB, self.mat(image))
            outs = []
            for name in self.outputs:
                ret, out = ex.extract(name)
                if ret != 0:
                    raise RuntimeError(f"ncnn failed on {self.stage or 'a net'} (output {name}, code {ret})")
                outs.append(np.array(out))
            per_item.append(outs)
        if not per_item:
            raise ValueError("an empty batch")
        # ncnn drops the batch axis and a map's single channel: prob (1, h, w) or (1,) per item
        return (np.stack([o[0][0] for o in per_item]), *(np.stack([o[k] for o in per_item])
                                                          for k in range(1, len(self.outputs))))


def check_stage(folder: Path, stage: str) -> None:
    """Refuse another stage's param file: P-Net is convolutions only, R-Net and O-Net end in fully connected layers."""
    param = folder / f"{stage}.param"
    has_fc = "InnerProduct" in param.read_text().split()
    if has_fc == (stage == "pnet"):
        raise store.WeightsError(f"{param}: not a {stage} net ({'has' if has_fc else 'lacks'} fully connected "
                                 "layers); is it another stage's file? Export the folder again (openmtcnn export ncnn)")


def converted(weights: str | os.PathLike) -> Path:
    """The cached float ncnn folder of a weight set, converted with pnnx the first time."""
    dest = folders.cached_folder(weights)
    if (dest / "manifest.json").is_file():
        return dest
    try:
        from openmtcnn.runtime.torch import load_net
        from openmtcnn.weights.pnnx import replace_folder, write_folder
    except ImportError as e:
        raise ImportError(f"backend 'ncnn' converts weight set {str(weights)!r} with pnnx on first use, which needs "
                          f"PyTorch and pnnx: {INSTALL}; or run a folder that `openmtcnn export ncnn` wrote "
                          "(weights=DIR)") from e
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", dir=dest.parent))
    try:
        write_folder({s: load_net(str(weights), s).net for s in STAGES}, tmp, f"weight set {weights}",
                     name=store.weights_dir(weights).name, models=store.manifest(weights)["models"])
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return replace_folder(tmp, dest)


def ncnn_folder(weights: str | os.PathLike) -> Path:
    """The ncnn folder that runs a weight set: itself when it is one, else its cached conversion."""
    if folders.is_ncnn(weights):
        return store.weights_dir(weights)
    return converted(weights)


def ncnn_nets(weights: str | os.PathLike = store.DEFAULT, threads: int | None = None, fp16: bool = False) -> dict:
    """{stage: NcnnNet} of a weight set or ncnn folder."""
    import_ncnn()
    folder, info = folders.check_folder(ncnn_folder(weights))
    options = NcnnOptions(threads, fp16)
    nets = {}
    for stage in STAGES:
        check_stage(folder, stage)
        nets[stage] = NcnnNet(*folders.stage_files(folder, stage), info["outputs"][stage], options, stage)
    return nets
