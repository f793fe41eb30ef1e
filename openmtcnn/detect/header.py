"""An encoded image's width and height read from its header, without decoding it.

The pixel limit (``MTCNN(max_pixels=...)``) refuses huge images from this before a decoder
allocates them. Formats: PNG, JPEG, BMP, GIF, WebP, TIFF and PNM (PBM/PGM/PPM); for others,
or a header too damaged to read, ``image_size`` says None and the size is checked after decoding.
"""
from __future__ import annotations

import re
import struct
from typing import Callable, Optional

Size = Optional[tuple[int, int]]  # (width, height), or None when the header does not say


def png_size(data: bytes) -> Size:
    """PNG: the IHDR chunk, which must come first."""
    if data[12:16] != b"IHDR":
        return None
    return struct.unpack(">II", data[16:24])


def gif_size(data: bytes) -> Size:
    """GIF: the logical screen, which every frame lies in."""
    return struct.unpack("<HH", data[6:10])


def bmp_size(data: bytes) -> Size:
    """BMP: the DIB header (OS/2 12-byte headers hold 16-bit sizes; a negative height is a top-down image)."""
    (header,) = struct.unpack("<I", data[14:18])
    if header == 12:
        return struct.unpack("<HH", data[18:22])
    width, height = struct.unpack("<ii", data[18:26])
    return abs(width), abs(height)


def webp_size(data: bytes) -> Size:
    """WebP: the first chunk, lossy (VP8), lossless (VP8L) or extended (VP8X, the canvas)."""
    if data[8:12] != b"WEBP":
        return None
    chunk = data[12:16]
    if chunk == b"VP8 " and data[23:26] == b"\x9d\x01\x2a":
        width, height = struct.unpack("<HH", data[26:30])
        return width & 0x3FFF, height & 0x3FFF
    if chunk == b"VP8L" and data[20] == 0x2F:
        (bits,) = struct.unpack("<I", data[21:25])
        return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    if chunk == b"VP8X":
        return int.from_bytes(data[24:27], "little") + 1, int.from_bytes(data[27:30], "little") + 1
    return None


def tiff_size(data: bytes) -> Size:
    """TIFF: ImageWidth (256) and ImageLength (257) in the first IFD (BigTIFF: None)."""
    order = "<" if data[:2] == b"II" else ">"
    if struct.unpack(order + "H", data[2:4])[0] != 42:
        return None
    (offset,) = struct.unpack(order + "I", data[4:8])
    (count,) = struct.unpack(order + "H", data[offset:offset + 2])
    found = {}
    for entry in range(offset + 2, offset + 2 + 12 * count, 12):
        tag, kind = struct.unpack(order + "HH", data[entry:entry + 4])
        if tag in (256, 257):
            fmt = {3: "H", 4: "I"}.get(kind)
            if fmt is None:
                return None
            found[tag] = struct.unpack(order + fmt, data[entry + 8:entry + 8 + struct.calcsize(fmt)])[0]
    return (found[256], found[257]) if len(found) == 2 else None


# JPEG frame headers (SOF0-SOF15) hold the size; C4 (DHT), C8 (JPG) and CC (DAC) share their range.
JPEG_FRAMES = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
JPEG_NO_LENGTH = frozenset(range(0xD0, 0xD9)) | {0x01}  # RSTn, SOI, TEM: markers without a segment


def jpeg_size(data: bytes) -> Size:
    """JPEG: the first frame header, reached by skipping the segments before it."""
    i = 2
    while i + 9 <= len(data):
        if data[i] != 0xFF:
            return None
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
        elif marker in JPEG_NO_LENGTH:
            i += 2
        elif marker in JPEG_FRAMES:
            height, width = struct.unpack(">HH", data[i + 5:i + 9])
            return width, height
        elif marker == 0xDA:  # image data before any frame header
            return None
        else:
            i += 2 + struct.unpack(">H", data[i + 2:i + 4])[0]
    return None


def pnm_size(data: bytes) -> Size:
    """PBM/PGM/PPM: the first two numbers after the magic number (comments skipped)."""
    words = re.sub(rb"#[^\n]*", b" ", data[2:512]).split()
    return int(words[0]), int(words[1])


READERS: tuple[tuple[tuple[bytes, ...], Callable[[bytes], Size]], ...] = (
    ((b"\x89PNG\r\n\x1a\n",), png_size),
    ((b"\xff\xd8",), jpeg_size),
    ((b"BM",), bmp_size),
    ((b"GIF87a", b"GIF89a"), gif_size),
    ((b"RIFF",), webp_size),
    ((b"II", b"MM"), tiff_size),
    ((b"P1", b"P2", b"P3", b"P4", b"P5", b"P6"), pnm_size),
)


def image_size(data: bytes) -> Size:
    """(width, height) that an encoded image's header declares; None for other formats or unreadable headers."""
    for magics, reader in READERS:
        if data.startswith(magics):
            try:
                return reader(data)
            except (struct.error, IndexError, ValueError):
                return None
    return None
