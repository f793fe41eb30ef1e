"""Sample sets on disk: shards of .npy arrays, a manifest of the finished ones, and a memory-mapped reader.

Layout of one set (``<out>/<size>/``)::

    manifest.json              settings, and the finished shards with their counts per kind
    shard_00000/images.npy     (n, size, size, 3) uint8 RGB
    shard_00000/kind.npy       (n,) int8: 0 negative, 1 positive, 2 part, 3 landmark
    shard_00000/box.npy        (n, 4) float32 box offsets (NaN for negatives and landmark samples)
    shard_00000/landmarks.npy  (n, 5, 2) float32 points in crop units (NaN except landmark samples)

A shard is written under a temporary name and renamed when whole; the manifest is rewritten
atomically after each shard, so a killed run leaves only whole, listed shards to keep.
"""
from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np

from openmtcnn.data.crops import KIND_NAMES, Samples
from openmtcnn.fileio import atomic_write_bytes, load_array, read_json

FORMAT = 1
MANIFEST = "manifest.json"
FIELDS = Samples._fields  # images, kind, box, landmarks


def shard_name(index: int) -> str:
    return f"shard_{index:05d}"


def kind_counts(kind: np.ndarray) -> dict[str, int]:
    """Number of samples of each kind, by name."""
    found = np.bincount(np.asarray(kind, np.int64), minlength=len(KIND_NAMES))
    return {name: int(found[k]) for k, name in enumerate(KIND_NAMES)}


def write_shard(folder: str | Path, index: int, samples: Samples) -> Path:
    """Write one shard folder atomically (temporary folder renamed over any stale one)."""
    folder = Path(folder)
    final = folder / shard_name(index)
    tmp = Path(tempfile.mkdtemp(dir=folder, prefix=f".{final.name}.tmp-"))
    try:
        for name, array in zip(FIELDS, samples):
            np.save(tmp / f"{name}.npy", np.ascontiguousarray(array))
        os.chmod(tmp, 0o755)
        if final.exists():  # written before a kill but never listed: same data, replace it
            shutil.rmtree(final)
        os.replace(tmp, final)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
    return final


def read_manifest(folder: str | Path) -> dict | None:
    """The manifest of a sample set, or None when there is none yet."""
    path = Path(folder) / MANIFEST
    if not path.is_file():
        return None
    manifest = read_json(path)
    if not (isinstance(manifest, dict) and isinstance(manifest.get("shards"), list)):
        raise ValueError(f"{path}: not a sample-set manifest (a JSON object listing its shards); "
                         "delete the folder and make the set again")
    return manifest


def write_manifest(folder: str | Path, manifest: dict) -> None:
    atomic_write_bytes(Path(folder) / MANIFEST, json.dumps(manifest, indent=1).encode())


def open_manifest(folder: str | Path, settings: dict, total_shards: int) -> dict:
    """The manifest to continue: the existing one if made with the same settings, else a new one.

    ValueError when the folder holds shards made with other settings (mixing them would be
    silent corruption). Leftover temporary shard folders of a killed run are removed, and listed
    shards whose files are missing, damaged or cut short are unlisted, to be made again.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for stale in folder.glob(".shard_*.tmp-*"):
        shutil.rmtree(stale, ignore_errors=True)
    settings = json.loads(json.dumps(settings))
    old = read_manifest(folder)
    if old is None:
        return {"format": FORMAT, "settings": settings, "total_shards": total_shards, "complete": False,
                "counts": kind_counts(np.zeros(0, np.int8)), "shards": []}
    if old.get("settings") != settings or old.get("total_shards") != total_shards:
        changed = sorted(k for k in set(settings) | set(old.get("settings", {}))
                         if settings.get(k) != old.get("settings", {}).get(k))
        raise ValueError(f"{folder / MANIFEST} was made with other settings ({', '.join(changed) or 'shard count'}); "
                         "use a new output folder or delete this one")
    return drop_damaged(folder, old)


def shard_problem(folder: Path, entry: dict) -> str | None:
    """Why a listed shard cannot be read (a file missing, damaged, cut short or of another length), or None."""
    for name in FIELDS:
        file = folder / entry["name"] / f"{name}.npy"
        try:
            count = len(load_array(file, mmap=True))
        except (OSError, ValueError) as e:
            return str(e)
        if count != entry["count"]:
            return f"{file} holds {count} samples, the manifest says {entry['count']}"
    return None


def drop_damaged(folder: Path, manifest: dict) -> dict:
    """The manifest without the shards that ``shard_problem`` finds fault with (each named on stderr), rewritten."""
    problems = {s["index"]: shard_problem(folder, s) for s in manifest["shards"]}
    for index, problem in problems.items():
        if problem:
            print(f"{folder / shard_name(index)}: {problem}; making this shard again", file=sys.stderr)
    if any(problems.values()):
        manifest["shards"] = [s for s in manifest["shards"] if not problems[s["index"]]]
        tally(folder, manifest)
    return manifest


def record_shard(folder: str | Path, manifest: dict, index: int, kind: np.ndarray, images: int) -> None:
    """Add a finished shard to the manifest and rewrite it atomically."""
    entry = {"name": shard_name(index), "index": index, "images": images, "count": len(kind),
             "counts": kind_counts(kind)}
    manifest["shards"] = sorted([s for s in manifest["shards"] if s["index"] != index] + [entry],
                                key=lambda s: s["index"])
    tally(folder, manifest)


def tally(folder: str | Path, manifest: dict) -> None:
    """The manifest's counts and completeness from its shards, rewritten atomically."""
    manifest["counts"] = {name: sum(s["counts"][name] for s in manifest["shards"]) for name in KIND_NAMES}
    manifest["complete"] = len(manifest["shards"]) == manifest["total_shards"]
    write_manifest(folder, manifest)


class SampleSet:
    """The finished shards of one or more sample sets as one indexable collection (memory-mapped,
    opened lazily). Several folders of one crop size join into one set, e.g. mined hard examples
    plus random crops.

    >>> s = SampleSet("samples/12"); images, kind, box, landmarks = s[np.arange(256)]
    """

    def __init__(self, folder: str | Path, *more: str | Path):
        folders = [Path(folder), *map(Path, more)]
        manifests = [read_manifest(f) for f in folders]
        for f, m in zip(folders, manifests):
            if m is None:
                raise FileNotFoundError(f"no sample set here (missing {f / MANIFEST})")
        sizes = sorted({int(m["settings"]["size"]) for m in manifests})
        if len(sizes) != 1:
            raise ValueError(f"sample sets of different crop sizes {sizes} cannot be joined")
        self.folder, self.manifest, self.size = folders[0], manifests[0], sizes[0]
        self.complete = all(bool(m.get("complete")) for m in manifests)
        self.shards = [{**s, "folder": f} for f, m in zip(folders, manifests) for s in m["shards"] if s["count"] > 0]
        self.starts = np.concatenate([[0], np.cumsum([s["count"] for s in self.shards])]).astype(np.int64)
        self._open: dict[int, dict[str, np.ndarray]] = {}
        self.kind = np.concatenate([np.zeros(0, np.int8)] + [self._kind(s) for s in self.shards])

    def _kind(self, entry: dict) -> np.ndarray:
        """One shard's kinds read whole (small), checked against the manifest."""
        file = entry["folder"] / entry["name"] / "kind.npy"
        if not file.is_file():
            raise FileNotFoundError(f"shard file missing: {file}")
        kind = load_array(file)
        if len(kind) != entry["count"]:
            raise ValueError(f"{file} holds {len(kind)} samples, the manifest says {entry['count']}")
        return kind

    def _arrays(self, i: int) -> dict[str, np.ndarray]:
        """The memory-mapped arrays of shard i, opened on first use."""
        if i not in self._open:
            entry = self.shards[i]
            path = entry["folder"] / entry["name"]
            arrays = {}
            for name in FIELDS:
                file = path / f"{name}.npy"
                if not file.is_file():
                    raise FileNotFoundError(f"shard file missing: {file}")
                arrays[name] = load_array(file, mmap=True)
                if len(arrays[name]) != entry["count"]:
                    raise ValueError(f"{file} holds {len(arrays[name])} samples, the manifest says {entry['count']}")
            self._open[i] = arrays
        return self._open[i]

    def __len__(self) -> int:
        return int(self.starts[-1])

    def counts(self) -> dict[str, int]:
        """Number of samples of each kind, by name (negative, positive, part, landmark)."""
        return kind_counts(self.kind)

    def indices_by_kind(self) -> dict[int, np.ndarray]:
        """Global indices of the samples of each kind (0 negative, 1 positive, 2 part, 3 landmark)."""
        return {k: np.flatnonzero(self.kind == k) for k in range(len(KIND_NAMES))}

    def __getitem__(self, idx) -> Samples:
        """Samples at ``idx`` (int array, slice or int) as (images, kind, box, landmarks) in the order asked."""
        n = len(self)
        single = np.ndim(idx) == 0 and not isinstance(idx, slice)
        idx = np.arange(n)[idx] if isinstance(idx, slice) else np.asarray(idx, np.int64).reshape(-1)
        if idx.size and (idx.min() < -n or idx.max() >= n):
            raise IndexError(f"index out of range for a sample set of {n}")
        idx = np.where(idx < 0, idx + n, idx)
        order = np.argsort(idx, kind="stable")
        ordered = idx[order]
        shard = np.searchsorted(self.starts, ordered, side="right") - 1
        s = self.size
        out = Samples(np.empty((len(idx), s, s, 3), np.uint8), np.empty(len(idx), np.int8),
                      np.empty((len(idx), 4), np.float32), np.empty((len(idx), 5, 2), np.float32))
        bounds = np.flatnonzero(np.diff(shard)) + 1
        for part in np.split(np.arange(len(idx)), bounds) if len(idx) else []:  # one fancy index per shard
            i = int(shard[part[0]])
            local = ordered[part] - self.starts[i]
            arrays = self._arrays(i)
            for name, dest in zip(FIELDS, out):
                dest[order[part]] = arrays[name][local]
        return Samples(*(a[0] for a in out)) if single else out
