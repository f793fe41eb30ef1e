"""The cascade's geometry, one copy for detection and training alike.

Stage names and input sizes, P-Net's window and stride, box overlaps, squaring, and the crop
resampler: the crops the nets are trained on and those they see when detecting come from the
same code. Boxes are float arrays (N, 4): x1, y1, x2, y2, covering [x1, x2) x [y1, y2).
"""
from __future__ import annotations

from collections import defaultdict
from typing import Iterator, Sequence

import cv2
import numpy as np

STAGES = ("pnet", "rnet", "onet")
INPUT_SIZES = {"pnet": 12, "rnet": 24, "onet": 48}  # each net's square input (P-Net: its window)
PNET_WINDOW, PNET_STRIDE = 12, 2  # every P-Net variant: one output per 12 x 12 window, stride 2


def area(boxes: np.ndarray) -> np.ndarray:
    return np.maximum(boxes[..., 2] - boxes[..., 0], 0) * np.maximum(boxes[..., 3] - boxes[..., 1], 0)


def iou(box: np.ndarray, boxes: np.ndarray, mode: str = "union") -> np.ndarray:
    """Overlap of one box with many: intersection over union, or over the smaller area ("min")."""
    return pair_overlap(np.broadcast_to(box[:4], boxes[:, :4].shape), boxes, mode)


def overlap_matrix(a: np.ndarray, b: np.ndarray, mode: str = "union") -> np.ndarray:
    """Pairwise overlap, intersection over union or over the smaller area ("min")."""
    # One coordinate at a time: NumPy is slow on a trailing broadcast axis of length 2.
    (ax1, ay1, ax2, ay2), (bx1, by1, bx2, by2) = a[:, :4].T[:, :, None], b[:, :4].T[:, None, :]
    w = np.minimum(ax2, bx2) - np.maximum(ax1, bx1)
    h = np.minimum(ay2, by2) - np.maximum(ay1, by1)
    inter = np.maximum(w, 0) * np.maximum(h, 0)
    aa, ab = area(a)[:, None], area(b)[None, :]
    denom = np.minimum(aa, ab) if mode == "min" else aa + ab - inter
    return inter / np.maximum(denom, 1e-12)


def pair_overlap(a: np.ndarray, b: np.ndarray, mode: str = "union") -> np.ndarray:
    """Overlap of a[k] with b[k] for each k (boxes as rows)."""
    w = np.minimum(a[:, 2], b[:, 2]) - np.maximum(a[:, 0], b[:, 0])
    h = np.minimum(a[:, 3], b[:, 3]) - np.maximum(a[:, 1], b[:, 1])
    inter = np.maximum(w, 0) * np.maximum(h, 0)
    aa, ab = area(a), area(b)
    denom = np.minimum(aa, ab) if mode == "min" else aa + ab - inter
    return inter / np.maximum(denom, 1e-12)


def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pairwise intersection over union, shape (len(a), len(b))."""
    return overlap_matrix(a, b)


def square(boxes: np.ndarray) -> np.ndarray:
    """Squares of side max(w, h) around the same centres (the nets see square crops)."""
    wh = boxes[:, 2:4] - boxes[:, 0:2]
    centre = boxes[:, 0:2] + wh / 2
    half = wh.max(axis=1, keepdims=True) / 2
    return np.hstack([centre - half, centre + half])


def square_int(boxes: np.ndarray) -> np.ndarray:
    """Integer squares of side max(w, h) (at least 1) around the boxes' centres: the crops of training samples."""
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    side = np.maximum(np.floor(np.maximum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]) + 0.5), 1)
    x1 = np.floor((boxes[:, 0] + boxes[:, 2] - side) / 2 + 0.5)
    y1 = np.floor((boxes[:, 1] + boxes[:, 3] - side) / 2 + 0.5)
    return np.stack([x1, y1, x1 + side, y1 + side], axis=1).astype(np.int64)


LARGE_PIXELS = 2**24  # larger images are sampled band by band: their whole table would be 24 bytes a pixel
BAND_VALUES = 2**20  # values of the table made at once for a large image (8 MiB as float64)


def band_rows(shape: tuple[int, ...]) -> int:
    """Rows per band for an image of ``shape``: 0 (the whole table at once) up to LARGE_PIXELS pixels."""
    h, w, c = shape[0], shape[1], shape[2] if len(shape) > 2 else 1
    return 0 if h * w <= LARGE_PIXELS else max(4, BAND_VALUES // ((w + 1) * c))


def integral_image(image: np.ndarray, rows: int | None = None) -> np.ndarray | BandedIntegral:
    """Summed-area table (H+1, W+1, C) as float64; computed in int32 (16x faster) when it cannot overflow.

    A large image (``band_rows``), or any with ``rows`` > 0, gets a ``BandedIntegral`` instead,
    which every sampler here takes: the same numbers, a band of ``rows`` rows at a time.
    """
    rows = band_rows(image.shape) if rows is None else rows
    if rows:
        return BandedIntegral(image, rows)
    if image.dtype == np.uint8 and 255 * image.shape[0] * image.shape[1] < 2**31:
        return cv2.integral(image, sdepth=cv2.CV_32S).astype(np.float64)
    return cv2.integral(image, sdepth=cv2.CV_64F)


class BandedIntegral:
    """The summed-area table of a large image, made a band of rows at a time where it is sampled.

    The whole table of a 100-Mpx photo is 2.4 GB; this keeps the image and each band's column
    sums from the top (4 bytes a column per band). ``band(k)`` gives band k's rows and the next
    two: the whole table's numbers exactly (whole numbers, exact in float64).
    """

    def __init__(self, image: np.ndarray, rows: int):
        h, w = image.shape[:2]
        self.image, self.rows = image.reshape(h, w, -1), int(rows)
        self.shape = (h + 1, w + 1, self.image.shape[2])
        self.bands = -(-h // self.rows)  # band k starts at table row k * rows; the last ends at row h
        # each band's column sums of the rows above it (at most 255 * 2**24: uint32 holds them)
        self.above = np.zeros((self.bands, w * self.shape[2]), np.uint32)
        for k in range(self.bands - 1):
            rows = self.image[k * self.rows:(k + 1) * self.rows]
            np.add(self.above[k], column_sums(rows), out=self.above[k + 1], casting="unsafe")

    def band(self, k: int) -> tuple[int, np.ndarray]:
        """(first row, table rows first .. first + rows + 1) of band k, float64."""
        first = k * self.rows
        top = np.zeros(self.shape[1:], np.float64)
        np.cumsum(self.above[k].reshape(self.shape[1] - 1, -1), axis=0, dtype=np.float64, out=top[1:])
        part = self.image[first:first + self.rows + 1]
        exact = 255 * part.shape[0] * part.shape[1] < 2**31  # int32 sums cannot overflow (16x faster)
        return first, np.add(cv2.integral(part, sdepth=cv2.CV_32S if exact else cv2.CV_64F), top)

    def pixels(self) -> FloatBands:
        """The image itself as float32, in the same bands (for bilinear sampling)."""
        return FloatBands(self.image, self.rows)


def column_sums(rows: np.ndarray) -> np.ndarray:
    """Sums of the columns of a few image rows (H, W, C) -> (W * C,), int32."""
    return cv2.reduce(rows.reshape(rows.shape[0], -1), 0, cv2.REDUCE_SUM, dtype=cv2.CV_32S)[0]


class FloatBands:
    """A large uint8 image as float32, a band of rows at a time (``band(k)``: band k's rows and the next two)."""

    def __init__(self, image: np.ndarray, rows: int):
        self.image, self.rows = image.reshape(*image.shape[:2], -1), int(rows)
        self.shape, self.bands = self.image.shape, -(-image.shape[0] // self.rows)

    def band(self, k: int) -> tuple[int, np.ndarray]:
        first = k * self.rows
        return first, self.image[first:first + self.rows + 2].astype(np.float32)


def area_resize(integral: np.ndarray | BandedIntegral, width: int, height: int, channels_first: bool = False,
                rows: tuple[int, int] | None = None) -> np.ndarray:
    """The whole image resized to width x height by area averaging (as cv2.INTER_AREA), float32.

    Returns (height, width, C), or (C, height, width) with ``channels_first``; ``rows`` (start,
    stop) gives only those rows of the result, the same numbers. Costs in proportion to the
    output, not the input: every pyramid level reads the one integral image instead of the
    full-resolution picture.
    """
    xs, ys = _grid(integral.shape, width, height, *(rows or (0, height)))
    s = _sample(integral, ys[None], xs[None], cv2.BORDER_REPLICATE)[0]
    return _grid_means(s, xs, ys, channels_first)


def _grid(shape: tuple[int, ...], width: int, height: int, start: int, stop: int) -> tuple[np.ndarray, np.ndarray]:
    """Sample columns xs and rows ys of rows start..stop of a width x height area resize of a table of ``shape``."""
    h, w = shape[0] - 1, shape[1] - 1
    xs = np.round(np.arange(width + 1) * (w / width) * REMAP_STEPS) / REMAP_STEPS
    ys = np.round(np.arange(start, stop + 1) * (h / height) * REMAP_STEPS) / REMAP_STEPS
    return xs, ys


def _grid_means(s: np.ndarray, xs: np.ndarray, ys: np.ndarray, channels_first: bool) -> np.ndarray:
    """Cell means of one grid of table samples s (A+1, B+1, C) taken at rows ys and columns xs."""
    inverse_cell = (1 / (np.diff(ys)[:, None] * np.diff(xs)[None, :])).astype(np.float32)
    return _cell_means(s[None], inverse_cell[None], channels_first)[0]


def area_resizes(integral: BandedIntegral, requests: Sequence[tuple[int, int, int, int]],
                 channels_first: bool = False) -> Iterator[tuple[int, np.ndarray]]:
    """``area_resize(integral, width, height, channels_first, rows=(start, stop))`` of many requests, in one pass.

    Each band of the table is made once for all requests: the strips of every pyramid level of a
    large image cost one table's time, not one per level. A request is yielded, with its index,
    as soon as its last band is done, so only the requests under way are held.
    """
    grids = [_grid(integral.shape, *r) for r in requests]  # (xs, ys): small; cell areas come at the end
    todo, ending = defaultdict(list), defaultdict(list)  # band -> (request, its rows there); band -> requests done
    for i, (_, ys) in enumerate(grids):
        bands, at = np.unique(_band_keys(integral, ys.astype(np.float32)), return_index=True)
        for k, lo, hi in zip(bands, at, [*at[1:], len(ys)]):
            todo[k].append((i, lo, hi))
        ending[bands[-1]].append(i)
    samples: dict[int, np.ndarray] = {}
    for k in sorted(todo):
        first, band = integral.band(int(k))
        for i, lo, hi in todo[k]:
            xs, ys = grids[i]
            s = samples.setdefault(i, np.empty((len(ys), len(xs), integral.shape[2]), np.float64))
            mx = np.broadcast_to(xs.astype(np.float32), (hi - lo, len(xs)))
            s[lo:hi] = _remap_band(band, first, ys[lo:hi].astype(np.float32), mx, cv2.BORDER_REPLICATE)
        for i in ending[k]:
            yield i, _grid_means(samples.pop(i), *grids[i], channels_first)


def _cell_means(s: np.ndarray, inverse_cell: np.ndarray, channels_first: bool) -> np.ndarray:
    """Means of the cells between samples of an integral image: s (N, A+1, B+1, C) -> (N, A, B, C).

    The differences are exact in float64 and the result is float32, written straight into the
    channels-first layout when asked (one pass instead of a transpose copy afterwards). One large
    grid (a pyramid level) goes one channel at a time, so its temporaries stay small (1080p
    pyramid, one thread: 39 -> 34 ms); many small ones (crops) go all at once, which is faster there.
    """
    if len(s) == 1:
        c, a, b = s.shape[3], s.shape[1] - 1, s.shape[2] - 1
        out = np.empty((1, c, a, b) if channels_first else (1, a, b, c), np.float32)
        for k in range(c):
            rows = np.subtract(s[0, 1:, :, k], s[0, :-1, :, k])
            np.multiply(np.subtract(rows[:, 1:], rows[:, :-1]), inverse_cell[0],
                        out=out[0, k] if channels_first else out[0, ..., k], casting="unsafe")
        return out
    sums = np.diff(np.diff(s, axis=1), axis=2)
    if channels_first:
        out = np.empty((sums.shape[0], sums.shape[3], sums.shape[1], sums.shape[2]), np.float32)
        np.multiply(sums.transpose(0, 3, 1, 2), inverse_cell[:, None], out=out, casting="unsafe")
        return out
    out = np.empty(sums.shape, np.float32)
    np.multiply(sums, inverse_cell[..., None], out=out, casting="unsafe")
    return out


def crop_resize(image: np.ndarray, boxes: np.ndarray, size: int, channels_first: bool = False,
                integral: np.ndarray | BandedIntegral | None = None) -> np.ndarray:
    """Crops of ``boxes`` resized to size x size, zero outside the image, float32.

    Returns (N, size, size, C), or (N, C, size, size) with ``channels_first`` (what the nets
    take). Like OpenCV's INTER_AREA, crops larger than ``size`` are area-averaged (from the
    integral image) and smaller ones bilinearly interpolated. Both are single ``cv2.remap``
    calls over all crops; remap places samples on a 1/32-pixel grid, so area cells move by
    up to 1/64 pixel (each output is still the exact mean of its cell). A large image
    (``band_rows``) is read a band of rows at a time: the same numbers, without whole copies.
    """
    side = np.maximum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1])
    shrink = side >= size
    if shrink.all() and len(boxes):
        integral = integral_image(image) if integral is None else integral
        return _area_resize(integral, boxes, size, channels_first)
    c = image.shape[2]
    out = np.zeros((len(boxes), c, size, size) if channels_first else (len(boxes), size, size, c), np.float32)
    if shrink.any():
        integral = integral_image(image) if integral is None else integral
        out[shrink] = _area_resize(integral, boxes[shrink], size, channels_first)
    if (~shrink).any():
        small = _bilinear_resize(_pixels(image, integral), boxes[~shrink], size)
        out[~shrink] = small.transpose(0, 3, 1, 2) if channels_first else small
    return out


def _pixels(image: np.ndarray, integral: np.ndarray | BandedIntegral | None) -> np.ndarray | FloatBands:
    """The image as float32 for bilinear crops: in bands when it is large (a whole copy is 12 bytes a pixel)."""
    if isinstance(integral, BandedIntegral):
        return integral.pixels()
    rows = band_rows(image.shape) if integral is None else 0
    return FloatBands(image, rows) if rows else image.astype(np.float32)


REMAP_STEPS = 32  # cv2.remap's INTER_LINEAR places samples on a 1/32-pixel grid
MAX_MAP_ROWS = 32000  # remap's maps must stay under 2**15 rows (images under 32000 px)


def _sample(src: np.ndarray | BandedIntegral | FloatBands, ys: np.ndarray, xs: np.ndarray, border: int) -> np.ndarray:
    """Bilinear samples of ``src`` (H, W, C) on each box's grid ys (N, A) x xs (N, B) -> (N, A, B, C)."""
    if not isinstance(src, np.ndarray):
        return _sample_bands(src, ys, xs, border)
    n, a, b = len(ys), ys.shape[1], xs.shape[1]
    per_call = max(1, MAX_MAP_ROWS // a)
    out = np.empty((n, a, b, src.shape[2]), src.dtype)
    for start in range(0, n, per_call):
        part = slice(start, start + per_call)
        k = len(ys[part])
        mx = np.broadcast_to(xs[part, None, :], (k, a, b)).reshape(k * a, b).astype(np.float32)
        my = np.broadcast_to(ys[part, :, None], (k, a, b)).reshape(k * a, b).astype(np.float32)
        r = cv2.remap(src, mx, my, cv2.INTER_LINEAR, borderMode=border, borderValue=0)
        out[part] = r.reshape(k, a, b, -1)
    return out


def _sample_bands(src: BandedIntegral | FloatBands, ys: np.ndarray, xs: np.ndarray, border: int) -> np.ndarray:
    """``_sample`` from a source made band by band: each row of samples from the band that holds its top row."""
    n, a, b = len(ys), ys.shape[1], xs.shape[1]
    my = ys.astype(np.float32).reshape(-1)  # the whole source's map, moved band by band
    owner = np.repeat(np.arange(n), a)  # the box of each row of samples
    key = _band_keys(src, my)
    order = np.argsort(key, kind="stable")
    out = np.empty((n * a, b, src.shape[2]), np.float64 if isinstance(src, BandedIntegral) else np.float32)
    for group in np.split(order, np.flatnonzero(np.diff(key[order])) + 1):
        first, band = src.band(int(key[group[0]]))
        out[group] = _remap_band(band, first, my[group], xs[owner[group]].astype(np.float32), border)
    return out.reshape(n, a, b, -1)


def _band_keys(src: BandedIntegral | FloatBands, my: np.ndarray) -> np.ndarray:
    """The band of each row of samples at source rows ``my`` (float32, as remap takes them)."""
    return np.minimum(np.maximum(np.floor(my), 0).astype(np.int64) // src.rows, src.bands - 1)


def _remap_band(band: np.ndarray, first: int, my: np.ndarray, mx: np.ndarray, border: int) -> np.ndarray:
    """Rows of samples at source rows ``my`` (M,) and columns ``mx`` (M, B), float32, from a band starting at ``first``.

    A band holds its rows and the next two, so a sample's four neighbours are in it however remap
    rounds; the first and last bands end where the source does, so its borders are the whole
    source's. The map moves by whole rows, exactly (float32 minus a whole number), so remap's
    numbers are those of one call on the whole source.
    """
    out = np.empty((len(my), mx.shape[1], band.shape[2]), band.dtype)
    for start in range(0, len(my), MAX_MAP_ROWS):
        part = slice(start, start + MAX_MAP_ROWS)
        x = np.ascontiguousarray(mx[part])
        y = np.ascontiguousarray(np.broadcast_to((my[part] - np.float32(first))[:, None], x.shape))
        r = cv2.remap(band, x, y, cv2.INTER_LINEAR, borderMode=border, borderValue=0)
        out[part] = r.reshape(len(x), x.shape[1], -1)
    return out


def _area_resize(integral: np.ndarray, boxes: np.ndarray, size: int, channels_first: bool = False) -> np.ndarray:
    """Mean of the image over each output cell, from the integral image (zero outside the image)."""
    t = np.arange(size + 1) / size
    # Cell edges on remap's own 1/32-pixel grid, so that each output is the exact mean of its cell.
    xs = np.round((boxes[:, 0:1] + (boxes[:, 2:3] - boxes[:, 0:1]) * t) * REMAP_STEPS) / REMAP_STEPS
    ys = np.round((boxes[:, 1:2] + (boxes[:, 3:4] - boxes[:, 1:2]) * t) * REMAP_STEPS) / REMAP_STEPS
    # Past the border the integral stays constant: replicating it adds nothing, as zeros would.
    s = _sample(integral, ys, xs, cv2.BORDER_REPLICATE)
    cell = np.diff(ys, axis=1)[:, :, None] * np.diff(xs, axis=1)[:, None, :]
    return _cell_means(s, (1 / np.maximum(cell, 1.0 / REMAP_STEPS**2)).astype(np.float32), channels_first)


def _bilinear_resize(image: np.ndarray, boxes: np.ndarray, size: int) -> np.ndarray:
    """Bilinear samples at the output pixel centres, zero outside the image."""
    t = (np.arange(size) + 0.5) / size
    xs = boxes[:, 0:1] + (boxes[:, 2:3] - boxes[:, 0:1]) * t - 0.5
    ys = boxes[:, 1:2] + (boxes[:, 3:4] - boxes[:, 1:2]) * t - 0.5
    return _sample(image, ys, xs, cv2.BORDER_CONSTANT)
