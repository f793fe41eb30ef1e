"""Readers for the training sources: WIDER FACE box lists and CNN_FacePoint landmark lists."""
from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import cv2
import numpy as np


class WiderImage(NamedTuple):
    """One WIDER FACE picture and its valid faces, x1 y1 x2 y2 (x2 = x + w)."""

    path: Path
    boxes: np.ndarray  # (N, 4) float64


class FacePoint(NamedTuple):
    """One CNN_FacePoint face: its box x1 y1 x2 y2 and the five points (left eye, right eye, nose, mouth corners)."""

    path: Path
    box: np.ndarray  # (4,) float64
    points: np.ndarray  # (5, 2) float64


def _numbers(text: str, where: str, count: int | None = None) -> list[float]:
    """The whitespace-separated numbers of one line; ValueError naming the file and line otherwise."""
    try:
        values = [float(v) for v in text.split()]
    except ValueError:
        raise ValueError(f"{where}: expected numbers, got {text.strip()!r}") from None
    if count is not None and len(values) < count:
        raise ValueError(f"{where}: expected {count} numbers, got {len(values)} in {text.strip()!r}")
    return values


def read_wider(txt: str | Path, images: str | Path, keep_invalid: bool = False) -> list[WiderImage]:
    """Parse a WIDER FACE ``*_bbx_gt.txt``: picture paths under ``images`` and their face boxes.

    Faces flagged invalid (and zero-size boxes, such as the all-zero line of a picture with no
    face) are left out unless ``keep_invalid``.
    """
    txt, images = Path(txt), Path(images)
    if not txt.is_file():
        raise FileNotFoundError(f"WIDER FACE list not found: {txt}")
    lines = txt.read_text().splitlines()
    out, i = [], 0
    while i < len(lines):
        name = lines[i].strip()
        if not name:
            i += 1
            continue
        if not name.lower().endswith((".jpg", ".jpeg", ".png")):
            raise ValueError(f"{txt}:{i + 1}: expected an image path, got {name!r}")
        if i + 1 >= len(lines):
            raise ValueError(f"{txt}:{i + 2}: file ends before the face count of {name}")
        count_text = lines[i + 1].strip()
        if not count_text.isdigit():
            raise ValueError(f"{txt}:{i + 2}: expected a face count, got {count_text!r}")
        count = int(count_text)
        rows = max(count, 1)  # a picture with no face still has one all-zero line
        if i + 2 + rows > len(lines):
            raise ValueError(f"{txt}:{len(lines) + 1}: file ends inside the {count} faces of {name}")
        faces = np.array([(_numbers(lines[i + 2 + k], f"{txt}:{i + 3 + k}", 4) + [0.0] * 10)[:10]
                          for k in range(rows)])[:count]
        keep = (faces[:, 2] > 0) & (faces[:, 3] > 0)
        if not keep_invalid:
            keep &= faces[:, 7] == 0
        xywh = faces[keep, :4]
        out.append(WiderImage(images / name, np.hstack([xywh[:, :2], xywh[:, :2] + xywh[:, 2:]])))
        i += 2 + rows
    return out


def read_facepoint(listfile: str | Path, images: str | Path) -> list[FacePoint]:
    """Parse a CNN_FacePoint list: ``NAME left right top bottom x1 y1 ... x5 y5`` per line."""
    listfile, images = Path(listfile), Path(images)
    if not listfile.is_file():
        raise FileNotFoundError(f"CNN_FacePoint list not found: {listfile}")
    out = []
    for n, line in enumerate(listfile.read_text().splitlines(), 1):
        if not line.strip():
            continue
        name, _, rest = line.strip().partition(" ")
        v = _numbers(rest, f"{listfile}:{n}", 14)
        if len(v) != 14:
            raise ValueError(f"{listfile}:{n}: expected 14 numbers after the name, got {len(v)}")
        left, right, top, bottom = v[:4]
        if right <= left or bottom <= top:
            raise ValueError(f"{listfile}:{n}: empty face box left={left} right={right} top={top} bottom={bottom}")
        out.append(FacePoint(images / name.replace("\\", "/"), np.array([left, top, right, bottom]),
                             np.array(v[4:]).reshape(5, 2)))
    return out


# CNN_FacePoint boxes run from the brows to the mouth, WIDER's from the hairline to below the chin.
# Offsets (x1, y1, x2, y2) as fractions of the CNN_FacePoint box's (w, h, w, h) that move one to the
# other: medians over the 5,849 train faces of the matched detections of the 958-picture set (trained-subset, since
# replaced by trained)
# (benchmarks/facepoint_box_offsets.py; the published nets give -0.038 -0.300 0.034 0.109).
FACEPOINT_TO_WIDER = (-0.027, -0.294, 0.063, 0.133)


def wider_frame(faces: list[FacePoint], offsets: tuple[float, float, float, float] = FACEPOINT_TO_WIDER
                ) -> list[FacePoint]:
    """The faces with their boxes moved to WIDER's convention (hairline to chin), the frame the cascade detects in."""
    if not faces:
        return []
    boxes = np.stack([f.box for f in faces])
    wh = np.tile(boxes[:, 2:] - boxes[:, :2], 2)
    moved = boxes + wh * np.asarray(offsets, np.float64)
    return [f._replace(box=b) for f, b in zip(faces, moved)]


def facepoint_pictures(faces: list[FacePoint], offsets: tuple[float, float, float, float] = FACEPOINT_TO_WIDER
                       ) -> list[WiderImage]:
    """CNN_FacePoint faces as pictures with one WIDER-style face box each: more faces to crop or mine."""
    return [WiderImage(f.path, f.box[None]) for f in wider_frame(faces, offsets)]


def load_rgb(path: str | Path) -> np.ndarray:
    """A picture as uint8 RGB (H, W, 3); FileNotFoundError when it is missing or unreadable."""
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if bgr is None:
        raise FileNotFoundError(f"cannot read image: {path}")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def check_files(paths: list[Path], what: str) -> None:
    """FileNotFoundError naming the first missing file (before any work starts)."""
    missing = [p for p in paths if not Path(p).is_file()]
    if missing:
        raise FileNotFoundError(f"{len(missing)} {what} missing, first: {missing[0]}")
