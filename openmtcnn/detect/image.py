"""Turn what users pass as an image into a uint8 RGB array of shape (H, W, 3), or say why not."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Union

import cv2
import numpy as np

ImageLike = Union[str, os.PathLike, bytes, bytearray, memoryview, np.ndarray, Any]
IMAGE_EXTS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".pgm", ".ppm"})


def image_files(root: str | os.PathLike, exts: frozenset[str] = IMAGE_EXTS) -> list[Path]:
    """Files under ``root`` (recursively) whose suffix is in ``exts``, sorted: the same order every run."""
    return sorted(p for p in Path(root).rglob("*") if p.is_file() and p.suffix.lower() in exts)


def folder_images(folder: str | os.PathLike) -> list[Path]:
    """``image_files`` of a folder that must exist and hold images (ValueError saying which is wrong)."""
    root = Path(folder)
    if not root.is_dir():
        raise ValueError(f"image folder not found: {root}")
    files = image_files(root)
    if not files:
        raise ValueError(f"no images ({', '.join(sorted(IMAGE_EXTS))}) under {root}")
    return files


def decode(data: bytes, what: str = "bytes") -> np.ndarray:
    buf = np.frombuffer(data, np.uint8)
    img = cv2.imdecode(buf, cv2.IMREAD_COLOR) if buf.size else None
    if img is None:
        raise ValueError(f"could not decode {what} as an image (not a supported image format?)")
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def read_image(path: str | os.PathLike) -> np.ndarray:
    """Read an image file as RGB uint8."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no such image file: {path}")
    if path.is_dir():
        raise IsADirectoryError(f"expected an image file, got a folder: {path}")
    return decode(path.read_bytes(), what=str(path))


def from_array(arr: np.ndarray) -> np.ndarray:
    if arr.dtype != np.uint8:
        raise TypeError(f"image arrays must be uint8 (0-255), got dtype {arr.dtype}; "
                        "convert with np.clip(a, 0, 255).astype(np.uint8)")
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[:, :, 0]
    if arr.ndim == 2:
        arr = np.repeat(arr[:, :, None], 3, axis=2)
    elif arr.ndim == 3 and arr.shape[2] == 4:
        arr = arr[:, :, :3]
    if arr.ndim != 3 or arr.shape[2] != 3:
        raise ValueError(f"image arrays must be H x W (grey), H x W x 3 (RGB) or H x W x 4 (RGBA); "
                         f"got shape {arr.shape}")
    if arr.shape[0] == 0 or arr.shape[1] == 0:
        raise ValueError(f"image is empty: shape {arr.shape}")
    return np.ascontiguousarray(arr)


def to_rgb(image: ImageLike) -> np.ndarray:
    """Accepts a path, encoded bytes, a PIL image or a uint8 array (grey, RGB or RGBA)."""
    if isinstance(image, (str, os.PathLike)):
        return read_image(image)
    if isinstance(image, (bytes, bytearray, memoryview)):
        return decode(bytes(image))
    if isinstance(image, np.ndarray):
        return from_array(image)
    if hasattr(image, "convert") and hasattr(image, "mode") and hasattr(image, "size"):  # PIL
        return from_array(np.asarray(image.convert("RGB")))
    raise TypeError(f"unsupported image type {type(image).__name__}: pass a path, bytes, "
                    "a PIL image or a uint8 NumPy array")
