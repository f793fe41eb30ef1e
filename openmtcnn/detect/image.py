"""Turn what users pass as an image into a uint8 RGB array of shape (H, W, 3), or say why not."""
from __future__ import annotations

import os
import re
import stat
from pathlib import Path
from typing import Any, Union

import cv2
import numpy as np

from openmtcnn.detect.header import image_size

ImageLike = Union[str, os.PathLike, bytes, bytearray, memoryview, np.ndarray, Any]
MAX_PIXELS = 2**27  # default pixel limit (e.g. 16384 x 8192); memory: see MTCNN's docstring
# A 1x1 GIF: OpenCV reads GIFs from version 4.11 on, and only then are .gif files searched for.
TINY_GIF = (b"GIF89a\x01\x00\x01\x00\x80\x00\x00\xff\xff\xff\x00\x00\x00!\xf9\x04\x01\x00\x00\x00\x00"
            b",\x00\x00\x00\x00\x01\x00\x01\x00\x00\x02\x02D\x01\x00;")


class ImageError(ValueError):
    """An image that cannot be used: the message names it and says what to do."""


class ImageTooLarge(ImageError):
    """An image over the pixel limit (``max_pixels``), refused before memory is spent on it."""


def reads_gif() -> bool:
    """Whether this OpenCV decodes GIF files."""
    try:
        return cv2.imdecode(np.frombuffer(TINY_GIF, np.uint8), cv2.IMREAD_COLOR) is not None
    except cv2.error:
        return False


IMAGE_EXTS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".pgm", ".ppm"}
                       | ({".gif"} if reads_gif() else set()))


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


def check_pixels(width: int, height: int, max_pixels: int | None, what: str) -> None:
    """Refuse an image of more than ``max_pixels`` pixels (None: no limit) before memory is spent on it."""
    if max_pixels is not None and width * height > max_pixels:
        raise ImageTooLarge(f"{what}: {width}x{height} is {width * height} pixels, more than "
                            f"max_pixels={max_pixels}; shrink the image, or raise the limit with "
                            "MTCNN(max_pixels=...) (None: no limit)")


def decode(data: bytes, what: str = "bytes", max_pixels: int | None = MAX_PIXELS) -> np.ndarray:
    """Decode an encoded image to RGB; its header's size is checked against ``max_pixels`` first."""
    size = image_size(data)
    if size is not None:
        check_pixels(*size, max_pixels, what)
    buf = np.frombuffer(data, np.uint8)
    try:
        img = cv2.imdecode(buf, cv2.IMREAD_COLOR) if buf.size else None
    except cv2.error as e:  # e.g. a header declaring an absurd size, or a damaged TIFF
        raise ImageError(f"{what}: could not decode it as an image (OpenCV: {cv2_reason(e)}); "
                         "check that it is a complete image file, or re-save it as PNG or JPEG") from None
    if img is None:
        raise ImageError(f"{what}: could not decode it as an image (empty, damaged or not a supported format: "
                         f"{', '.join(sorted(IMAGE_EXTS))}); re-save it as PNG or JPEG")
    check_pixels(img.shape[1], img.shape[0], max_pixels, what)  # formats whose header is not read
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB, dst=img)  # in place: no second copy of a large photo


def cv2_reason(e: cv2.error) -> str:
    """The short part of an OpenCV error (what failed), without OpenCV's version, source file and line."""
    lines = str(e).strip().splitlines() or [type(e).__name__]
    found = re.search(r"error: \([^)]*\) (.*)", lines[-1])
    return found.group(1) if found else lines[-1]


def read_file(path: Path) -> bytes:
    """The bytes of a regular file; a FIFO, device or socket is refused (reading one could block forever)."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0))
    with os.fdopen(fd, "rb") as f:
        if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
            raise ImageError(f"{path}: not a regular file (a pipe, device or socket); pass an image file")
        return f.read()


def read_image(path: str | os.PathLike, max_pixels: int | None = MAX_PIXELS) -> np.ndarray:
    """Read an image file as RGB uint8."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no such image file: {path}")
    if path.is_dir():
        raise IsADirectoryError(f"expected an image file, got a folder: {path}")
    return decode(read_file(path), what=str(path), max_pixels=max_pixels)


def dtype_advice(dtype: np.dtype) -> str:
    """How to turn an array of ``dtype`` into the uint8 the detector takes."""
    if np.issubdtype(dtype, np.floating):
        return ("for floats in [0, 1] multiply by 255 first: np.clip(a * 255, 0, 255).round().astype(np.uint8); "
                "for floats in 0-255: np.clip(a, 0, 255).round().astype(np.uint8)")
    if dtype == np.uint16:
        return "for 16-bit images keep the high byte: (a >> 8).astype(np.uint8)"
    if dtype == np.bool_:
        return "for masks: a.astype(np.uint8) * 255"
    return "scale the values to 0-255 and convert with .astype(np.uint8)"


def from_array(arr: np.ndarray, max_pixels: int | None = MAX_PIXELS) -> np.ndarray:
    """A uint8 array, grey (H x W or H x W x 1), RGB or RGBA (alpha dropped), as a contiguous RGB array."""
    if arr.dtype != np.uint8:
        raise TypeError(f"image arrays must be uint8 (0-255), got dtype {arr.dtype}; {dtype_advice(arr.dtype)}")
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[:, :, 0]
    if arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[2] not in (3, 4)):
        raise ValueError(f"image arrays must be H x W (grey), H x W x 3 (RGB) or H x W x 4 (RGBA); "
                         f"got shape {arr.shape}")
    if arr.shape[0] == 0 or arr.shape[1] == 0:
        raise ValueError(f"image is empty: shape {arr.shape}")
    check_pixels(arr.shape[1], arr.shape[0], max_pixels, "image array")
    if arr.ndim == 2:
        arr = np.repeat(arr[:, :, None], 3, axis=2)
    elif arr.shape[2] == 4:
        arr = arr[:, :, :3]
    return np.ascontiguousarray(arr)


def is_pil(image: Any) -> bool:
    """Whether ``image`` looks like a PIL image (duck-typed: PIL is not imported unless one is passed)."""
    return hasattr(image, "convert") and hasattr(image, "mode") and hasattr(image, "size")


def from_pil(image: Any, max_pixels: int | None = MAX_PIXELS) -> np.ndarray:
    """A PIL image as RGB uint8: EXIF orientation applied, 16-bit modes scaled as OpenCV scales 16-bit files."""
    check_pixels(*image.size, max_pixels, "PIL image")
    if hasattr(image, "getexif") and image.getexif().get(0x0112, 1) != 1:  # the EXIF orientation tag
        from PIL import ImageOps

        image = ImageOps.exif_transpose(image)
    if image.mode == "F":
        raise TypeError("PIL images in mode F (float) have no fixed range: convert them to 8-bit first, e.g. "
                        "Image.fromarray(np.clip(np.asarray(img) * 255, 0, 255).round().astype(np.uint8)) "
                        "for values in [0, 1]")
    if image.mode == "I" or image.mode.startswith("I;16"):
        return from_array(sixteen_to_eight(np.asarray(image)), max_pixels)
    return from_array(np.asarray(image.convert("RGB")), max_pixels)


def sixteen_to_eight(values: np.ndarray) -> np.ndarray:
    """16-bit grey (PIL modes I;16 and I, 0-65535) to 8-bit by its high byte, as OpenCV reads 16-bit files."""
    if values.dtype.kind == "i" and values.size and (values.min() < 0 or values.max() > 65535):
        raise ValueError(f"PIL image in mode I holds values {values.min()}..{values.max()}: 32-bit images are read "
                         "as 16-bit (0-65535); scale it to 0-255 and convert it to mode L first")
    return (values.astype(np.uint16) >> 8).astype(np.uint8)


def to_rgb(image: ImageLike, max_pixels: int | None = MAX_PIXELS) -> np.ndarray:
    """A path, encoded bytes, a PIL image or a uint8 array (grey, RGB or RGBA) as an RGB uint8 array.

    One rule for orientation: paths and bytes are decoded by OpenCV, which applies the EXIF
    orientation tag; PIL images get ``ImageOps.exif_transpose``, so the same file gives the same
    picture either way; arrays are taken as they are. 16-bit files and PIL images (modes I;16, I)
    keep their high byte; PIL mode F is a TypeError. Images of more than ``max_pixels`` pixels
    (None: no limit) are refused with ``ImageError``, encoded ones from their header, before decoding.
    """
    if isinstance(image, (str, os.PathLike)):
        return read_image(image, max_pixels)
    if isinstance(image, (bytes, bytearray, memoryview)):
        return decode(bytes(image), max_pixels=max_pixels)
    if isinstance(image, np.ndarray):
        return from_array(image, max_pixels)
    if is_pil(image):
        return from_pil(image, max_pixels)
    raise TypeError(f"unsupported image type {type(image).__name__}: pass a path, bytes, "
                    "a PIL image or a uint8 NumPy array")
