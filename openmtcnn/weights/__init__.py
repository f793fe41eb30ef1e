"""The shipped weight sets: one folder each, ONNX for inference and an npz of torch tensors.

A set's folder holds ``pnet.onnx``, ``rnet.onnx``, ``onet.onnx``, ``torch.npz`` (the
state dicts, keys ``<stage>/<param>``) and ``manifest.json`` (registry name of each
stage's variant, and how the files were made).
"""
from __future__ import annotations

import json
import os
import zipfile
import zlib
from pathlib import Path

import numpy as np

from openmtcnn.fileio import atomic_write, atomic_write_bytes
from openmtcnn.geometry import STAGES

ROOT = Path(__file__).resolve().parent
DEFAULT = "published"


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


class WeightsError(ValueError):
    """A weight set that cannot be used (a damaged, swapped or inconsistent file): names the file and what to do."""


def manifest(name: str | os.PathLike = DEFAULT) -> dict:
    """A weight set's manifest.json, which must hold a JSON object."""
    path = weights_dir(name) / "manifest.json"
    try:
        info = json.loads(path.read_bytes())
    except ValueError as e:  # not JSON, or not UTF-8
        raise WeightsError(f"{path}: not valid JSON ({e}); restore the weight set's manifest.json "
                           "(reinstall openmtcnn, or export the set again)") from None
    if not isinstance(info, dict):
        raise WeightsError(f"{path}: a manifest must be a JSON object ({{...}}), got a {type(info).__name__}; "
                           "restore the weight set's manifest.json (reinstall openmtcnn, or export the set again)")
    return info


def float_source(folder: Path) -> Path:
    """The folder of the set that a set's ``float_weights`` names (WeightsError when it names none or itself)."""
    path = folder / "manifest.json"
    source = manifest(folder).get("float_weights")
    if not isinstance(source, str):
        raise WeightsError(f"{folder}: no torch.npz here, and {path} names no float_weights set that holds it; "
                           "add the set's torch.npz or its float_weights")
    try:
        target = weights_dir(source)
    except ValueError as e:
        raise WeightsError(f"{path}: float_weights {source!r} cannot be used: {e}") from None
    if target.resolve() == folder.resolve():
        raise WeightsError(f"{path}: float_weights {source!r} names this set itself; "
                           "it must name the float set that holds torch.npz (e.g. \"published\")")
    return target


def params_dir(name: str | os.PathLike) -> Path:
    """The folder whose torch.npz holds a set's parameters: its own, or that of the set its
    ``float_weights`` names (followed from set to set; a cycle is a WeightsError)."""
    folder, seen = weights_dir(name), set()
    while not (folder / "torch.npz").is_file():
        seen.add(folder.resolve())
        folder = float_source(folder)
        if folder.resolve() in seen:
            raise WeightsError(f"{folder / 'manifest.json'}: its float_weights lead round in a cycle of sets "
                               "without torch.npz; one of them must name the float set that holds it")
    return folder


def check_weight_set(name: str | os.PathLike) -> None:
    """Raise WeightsError when a set's manifest is not an object or its float_weights cannot be followed."""
    if "float_weights" in manifest(name):
        float_source(weights_dir(name))
        params_dir(name)


def onnx_path(name: str | os.PathLike, stage: str) -> Path:
    return weights_dir(name) / f"{stage}.onnx"


def load_state(name: str | os.PathLike, stage: str) -> dict[str, np.ndarray]:
    """One stage's parameters as NumPy arrays (pickle-free npz).

    A set without its own npz names the float set it was made from (``float_weights``, e.g.
    an int8 set quantised from ``published``): its parameters are those, not a second copy.
    """
    path = params_dir(name) / "torch.npz"
    try:
        with np.load(path, allow_pickle=False) as z:
            prefix = f"{stage}/"
            return {k[len(prefix):]: z[k] for k in z.files if k.startswith(prefix)}
    except (ValueError, EOFError, zipfile.BadZipFile, zlib.error) as e:  # NumPy's and zipfile's messages name no file
        raise WeightsError(f"{path}: cannot be read ({e}); the file is damaged or was cut short: "
                           "restore it (reinstall openmtcnn, or export the set again)") from None


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


def mix_weight_sets(picks: dict[str, str | os.PathLike], out: str | os.PathLike, note: str = "") -> Path:
    """A weight set whose each stage is copied from the set ``picks[stage]`` (e.g. one stage swapped for
    the published one, to see which stage holds a cascade back)."""
    if sorted(picks) != sorted(STAGES):
        raise ValueError(f"pick a weight set for each of {STAGES}, got {sorted(picks)}")
    info = {"name": Path(out).name, "models": {}, "sources": {}, "note": note}
    for stage, name in picks.items():
        info["models"][stage] = manifest(name)["models"][stage]
        info["sources"][stage] = f"weight set {name}"
        kwargs = manifest(name).get("model_kwargs", {}).get(stage)
        if kwargs:
            info.setdefault("model_kwargs", {})[stage] = kwargs
    return save_weight_set(out, {s: load_state(n, s) for s, n in picks.items()},
                           {s: onnx_path(n, s).read_bytes() for s, n in picks.items()}, info)
