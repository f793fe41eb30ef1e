"""The images a job covers: folders (recursive), image files and manifests, as one sorted list without repeats."""
from __future__ import annotations

import csv
import os
from pathlib import Path
from typing import Iterable

from openmtcnn.batch.config import BatchError

MANIFEST_EXTS = (".txt", ".csv", ".parquet")


def read_manifest(path: Path) -> list[str]:
    """The image paths a manifest lists: a .txt one a line (blank lines and # comments skipped), or the ``path``
    column of a .csv or .parquet. Relative paths are taken from the manifest's folder, so a manifest can move."""
    suffix = path.suffix.lower()
    if suffix == ".txt":
        names = [line.strip() for line in path.read_text().splitlines()]
        names = [n for n in names if n and not n.startswith("#")]
    elif suffix == ".csv":
        with open(path, newline="") as f:
            reader = csv.DictReader(f)
            if "path" not in (reader.fieldnames or []):
                raise BatchError(f"{path}: a CSV manifest needs a 'path' column, found {reader.fieldnames}")
            names = [row["path"] for row in reader if row["path"]]
    else:
        import pyarrow.parquet as pq

        if "path" not in pq.read_schema(path).names:
            raise BatchError(f"{path}: a Parquet manifest needs a 'path' column")
        names = [n for n in pq.read_table(path, columns=["path"]).column("path").to_pylist() if n]
    return [str(path.parent / n) for n in names]


def list_inputs(inputs: Iterable[str | os.PathLike]) -> list[str]:
    """Every image path the inputs name, sorted and without repeats: the same list, so the same shards, every run.

    Files in manifests are not looked at here (a missing one becomes a row with an error); a missing input
    or manifest, or inputs that hold no images, is a BatchError.
    """
    from openmtcnn.detect.image import image_files

    found: set[str] = set()
    for arg in inputs:
        p = Path(arg)
        if p.is_dir():
            found.update(str(f) for f in image_files(p))
        elif not p.exists():
            raise BatchError(f"input not found: {p}")
        elif p.suffix.lower() in MANIFEST_EXTS:
            try:
                found.update(read_manifest(p))
            except BatchError:
                raise
            except (OSError, ValueError, UnicodeDecodeError) as e:
                raise BatchError(f"cannot read the manifest {p}: {e}") from None
        else:
            found.add(str(p))
    if not found:
        raise BatchError("no images found in the given inputs")
    return sorted({os.path.normpath(f) for f in found})
