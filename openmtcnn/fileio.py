"""Atomic file writes: a crash leaves the old file or the new one, never half of one."""
from __future__ import annotations

import json
import math
import os
import tempfile
from pathlib import Path
from typing import Callable

import numpy as np


def atomic_write(path: str | Path, write: Callable[[str], None]) -> Path:
    """Call ``write(tmp_path)`` then rename the temporary file over ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=path.suffix)
    os.close(fd)
    try:
        write(tmp)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    return atomic_write(path, lambda tmp: Path(tmp).write_bytes(data))


def read_json(path: str | Path):
    """A JSON file's contents; one that is not JSON (damaged, cut short, not UTF-8) is a ValueError naming it."""
    try:
        return json.loads(Path(path).read_bytes())
    except (ValueError, UnicodeDecodeError) as e:  # JSONDecodeError is a ValueError
        raise ValueError(f"{path}: not valid JSON ({e}); the file is damaged or was cut short") from None


def load_array(path: str | Path, mmap: bool = False) -> np.ndarray:
    """A .npy file (memory-mapped with ``mmap``); a damaged or cut-short one is a ValueError naming it."""
    try:
        return np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)
    except (ValueError, EOFError) as e:  # numpy's messages (e.g. "mmap length is greater than file size") name no file
        raise ValueError(f"{path}: not a readable .npy array ({e}); the file is damaged or was cut short") from None


def json_ready(value, digits: int | None = None):
    """NumPy values -> Python ones, NaN and inf -> None, floats rounded to ``digits``: what strict JSON holds."""
    if isinstance(value, dict):
        return {k: json_ready(v, digits) for k, v in value.items()}
    if isinstance(value, np.ndarray):
        value = value.tolist()
    if isinstance(value, (list, tuple)):
        return [json_ready(v, digits) for v in value]
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, (float, np.floating)):
        value = float(value)
        if not math.isfinite(value):
            return None
        return value if digits is None else round(value, digits)
    return value


def write_json(path: str | Path, obj, digits: int | None = None) -> Path:
    """Write ``obj`` as strict, indented JSON (see ``json_ready``), atomically."""
    text = json.dumps(json_ready(obj, digits), indent=1, allow_nan=False) + "\n"
    return atomic_write_bytes(path, text.encode())
