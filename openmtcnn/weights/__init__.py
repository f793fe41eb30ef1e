"""The shipped weight sets: one folder each, ONNX for inference and an npz of torch tensors.

A set's folder holds ``pnet.onnx``, ``rnet.onnx``, ``onet.onnx``, ``torch.npz`` (the
state dicts, keys ``<stage>/<param>``) and ``manifest.json`` (registry name of each
stage's variant, and how the files were made).
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from openmtcnn.fileio import atomic_write, atomic_write_bytes

ROOT = Path(__file__).resolve().parent
DEFAULT = "published"
STAGES = ("pnet", "rnet", "onet")


def roots() -> list[Path]:
    """Folders holding weight sets: the package's, then $OPENMTCNN_WEIGHTS if set."""
    extra = os.environ.get("OPENMTCNN_WEIGHTS")
    return [ROOT] + ([Path(extra)] if extra else [])


def available_weights() -> list[str]:
    """Names of the weight sets that ship with the package (plus any in $OPENMTCNN_WEIGHTS)."""
    return sorted({p.parent.name for root in roots() for p in root.glob("*/manifest.json")})


def weights_dir(name: str | os.PathLike = DEFAULT) -> Path:
    """Folder of a weight set, by name or as a path to a folder with a manifest."""
    path = Path(name)
    if (path / "manifest.json").is_file():
        return path
    for root in roots():
        if (root / str(name) / "manifest.json").is_file():
            return root / str(name)
    raise ValueError(f"unknown weights {str(name)!r}: not a folder with manifest.json nor one of "
                     f"{available_weights()}")


def manifest(name: str | os.PathLike = DEFAULT) -> dict:
    return json.loads((weights_dir(name) / "manifest.json").read_text())


def onnx_path(name: str | os.PathLike, stage: str) -> Path:
    return weights_dir(name) / f"{stage}.onnx"


def load_state(name: str | os.PathLike, stage: str) -> dict[str, np.ndarray]:
    """One stage's parameters as NumPy arrays (pickle-free npz).

    A set without its own npz names the float set it was made from (``float_weights``, e.g.
    an int8 set quantised from ``published``): its parameters are those, not a second copy.
    """
    folder = weights_dir(name)
    if not (folder / "torch.npz").is_file() and "float_weights" in manifest(folder):
        return load_state(manifest(folder)["float_weights"], stage)
    with np.load(folder / "torch.npz", allow_pickle=False) as z:
        prefix = f"{stage}/"
        return {k[len(prefix):]: z[k] for k in z.files if k.startswith(prefix)}


def save_weight_set(folder: str | os.PathLike, states: dict[str, dict[str, np.ndarray]] | None,
                    onnx: dict[str, bytes], info: dict) -> Path:
    """Write a complete weight set atomically, file by file (manifest last).

    ``states=None`` writes no npz: ``info["float_weights"]`` must then name the set holding them.
    """
    folder = Path(folder)
    if states is None:
        if "float_weights" not in info:
            raise ValueError("a weight set without parameters must name its float_weights set")
    else:
        flat = {f"{stage}/{k}": v for stage, sd in states.items() for k, v in sd.items()}

        def write_npz(tmp: str) -> None:
            with open(tmp, "wb") as f:
                np.savez(f, **flat)

        atomic_write(folder / "torch.npz", write_npz)
    for stage, data in onnx.items():
        atomic_write_bytes(folder / f"{stage}.onnx", data)
    atomic_write_bytes(folder / "manifest.json", (json.dumps(info, indent=2) + "\n").encode())
    return folder
