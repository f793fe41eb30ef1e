"""FDDB evaluation by the protocol of Jain & Learned-Miller (2010) and their evaluation tool.

What is computed, exactly:

- Regions are pixel sets. Pixel (column j, row i) has its centre at (j, i), as in OpenCV's
  drawing; a region holds the pixels whose centres lie in it (boundary included): an
  annotated ellipse, a detection rectangle x..x+w, y..y+h, or with ``ellipse_fit`` the
  ellipse made from the rectangle (see ``EllipseFit``). Regions are clipped to the image
  when its size is known. Each region is rasterised row by row: a convex region meets a
  row in one run of pixels, so masks are (region, row) -> first/last column, vectorised,
  and exactly equal to a mask drawn over the image.
- Overlap of a face and a detection = |intersection| / |union| of their pixel sets.
- For every distinct detection score t of an image, the detections with score >= t are
  matched one to one to the faces by the Hungarian algorithm, maximising the total
  overlap over all pairs with overlap > 0 (scipy's linear_sum_assignment), as the
  official tool does: matching is redone per threshold, so a weak detection cannot take a
  face from a better one that is still counted.
- Discrete score: a matched pair with overlap > 0.5 is one true positive. Continuous
  score: every matched pair (overlap > 0) adds its overlap to the true positives.
  False positives (both curves, as in the official tool): detections kept at the
  threshold minus discrete true positives, so a detection matched at overlap <= 0.5
  also counts as a false positive.
- The ROC is pooled over all images: one point per distinct score over the whole set,
  true positive rate = true positives / annotated faces, against false positives.

Known difference from the official C++ tool: it draws ellipses with OpenCV (radii
truncated to whole pixels, a polygon outline) and rounds rectangle corners; here
ellipses and rectangles are exact real-valued regions, which moves overlaps by a few
boundary pixels (identical for rectangles with integer corners).
"""
from __future__ import annotations

import math
import os
import re
from pathlib import Path
from typing import NamedTuple

import numpy as np

from openmtcnn.fileio import atomic_write_bytes, write_json

FP_TARGETS = (500, 1000, 2000)
PROTOCOL = ("FDDB: IoU of pixel masks; one-to-one Hungarian matching maximising total IoU, redone at each "
            "score threshold; discrete TP = matched pair with IoU > 0.5, continuous TP = sum of matched IoU; "
            "FP = kept detections - discrete TP (both curves); TPR = TP / annotated faces")
FOLD_RE = re.compile(r"FDDB-fold-(\d+)-ellipseList\.txt")


class EllipseFit(NamedTuple):
    """Box -> ellipse convention (not part of FDDB): grow the box, then take its inscribed ellipse.

    Annotated FDDB ellipses cover the whole head from chin to crown, while detector
    boxes (MTCNN's included) run from about the eyebrows to the chin. The defaults grow
    the box upward by 20% of its height and keep its width; the ellipse is upright
    (angle pi/2: the first radius, half the grown height, points down the image).
    """

    top: float = 0.2  # fraction of the box height added above
    bottom: float = 0.0  # fraction of the box height added below
    sides: float = 0.0  # fraction of the box width added on each side


# ---- reading and writing -----------------------------------------------------------------------

def _records(path: Path, what: str, columns: tuple[int, ...]) -> dict[str, np.ndarray]:
    """Name line, count line, count rows of numbers; {name: (count, max(columns)) array}, in order."""
    if not path.is_file():
        raise FileNotFoundError(f"{what} not found: {path}")
    lines = [(n, ln.strip()) for n, ln in enumerate(path.read_text().splitlines(), 1) if ln.strip()]
    out, i, width = {}, 0, max(columns)
    while i < len(lines):
        name = lines[i][1]
        if i + 1 >= len(lines):
            raise ValueError(f"{path}:{lines[i][0]}: image {name!r} has no count line")
        n, count = lines[i + 1]
        if not count.isdigit():
            raise ValueError(f"{path}:{n}: expected the number of faces of {name!r}, got {count!r}")
        if name in out:
            raise ValueError(f"{path}:{lines[i][0]}: image {name!r} listed twice")
        rows = np.zeros((int(count), width))
        for k in range(int(count)):
            if i + 2 + k >= len(lines):
                raise ValueError(f"{path}:{n}: {name!r} announces {count} rows, the file ends after {k}")
            n_row, text = lines[i + 2 + k]
            try:
                values = [float(v) for v in text.split()]
            except ValueError:
                values = []
            if len(values) not in columns or not all(math.isfinite(v) for v in values):
                raise ValueError(f"{path}:{n_row}: expected {' or '.join(map(str, columns))} numbers "
                                 f"for a face of {name!r}, got {text!r}")
            rows[k, :len(values)] = values
        out[name] = rows
        i += 2 + int(count)
    return out


def read_image_list(path: str | os.PathLike) -> list[str]:
    """Image names of an FDDB-fold-XX.txt list (no extension), in order."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"FDDB image list not found: {path}")
    return [ln.strip() for ln in path.read_text().splitlines() if ln.strip()]


def read_ellipse_list(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """FDDB-fold-XX-ellipseList.txt -> {name: (M, 5) major_radius minor_radius angle center_x center_y}."""
    path = Path(path)
    faces = _records(path, "FDDB annotation file", (5, 6))
    for name, rows in faces.items():
        bad = np.nonzero((rows[:, 0] <= 0) | (rows[:, 1] <= 0))[0]
        if len(bad):
            raise ValueError(f"{path}: face {bad[0] + 1} of {name!r} has a radius <= 0")
        faces[name] = rows[:, :5]
    return faces


def load_folds(folds_dir: str | os.PathLike) -> dict[int, dict[str, np.ndarray]]:
    """{fold number: annotations} for the folds present (an FDDB-fold-XX.txt list, if present, must agree)."""
    folds_dir = Path(folds_dir)
    if not folds_dir.is_dir():
        raise FileNotFoundError(f"FDDB folds folder not found: {folds_dir}")
    found = sorted((int(m.group(1)), p) for p in folds_dir.iterdir() if (m := FOLD_RE.fullmatch(p.name)))
    if not found:
        raise FileNotFoundError(f"no FDDB-fold-XX-ellipseList.txt annotation files in {folds_dir}")
    folds = {}
    for fold, path in found:
        faces = read_ellipse_list(path)
        list_path = path.with_name(path.name.replace("-ellipseList", ""))
        if list_path.is_file():
            names = read_image_list(list_path)
            if names != list(faces):
                k = next((i for i, (a, b) in enumerate(zip(names, faces)) if a != b), min(len(names), len(faces)))
                raise ValueError(f"{list_path}: image list does not match {path.name} "
                                 f"(they first differ at image {k + 1})")
        folds[fold] = faces
    return folds


def write_detections(path: str | os.PathLike, names: list[str], detections: dict[str, np.ndarray],
                     ellipses: bool = False) -> Path:
    """A standard FDDB detection file: per image its name, count, then "x y w h score" rows.

    With ``ellipses``, rows are "major_radius minor_radius angle center_x center_y score"
    (the official tool's -f 1 format). Images without an entry get count 0.
    """
    lines = []
    for name in names:
        rows = detections.get(name, np.zeros((0, 6 if ellipses else 5)))
        lines += [name, str(len(rows))] + [" ".join(f"{v:.6f}" if j == len(r) - 1 else f"{v:.4f}"
                                                    for j, v in enumerate(r)) for r in rows]
    return atomic_write_bytes(path, ("\n".join(lines) + "\n").encode())


def read_detections(path: str | os.PathLike, ellipses: bool = False) -> dict[str, np.ndarray]:
    """A detection file as written by ``write_detections``: {name: (N, 5) or (N, 6) rows}."""
    return _records(Path(path), "FDDB detection file", (6,) if ellipses else (5,))


def boxes_to_rows(boxes: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """x1 y1 x2 y2 boxes and scores -> FDDB "x y w h score" rows."""
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    return np.column_stack([boxes[:, :2], boxes[:, 2:] - boxes[:, :2], np.asarray(scores, np.float64)])


def rows_to_ellipses(rows: np.ndarray, fit: EllipseFit = EllipseFit()) -> np.ndarray:
    """x y w h score rows -> (N, 6) FDDB ellipses (radius along angle, other radius, angle, cx, cy, score)."""
    x, y, w, h = (rows[:, k] for k in range(4))
    x1, x2 = x - fit.sides * w, x + w + fit.sides * w
    y1, y2 = y - fit.top * h, y + h + fit.bottom * h
    return np.column_stack([(y2 - y1) / 2, (x2 - x1) / 2, np.full(len(rows), np.pi / 2),
                            (x1 + x2) / 2, (y1 + y2) / 2, rows[:, 4]])


# ---- rasterising and overlap -------------------------------------------------------------------

def _clip(first: np.ndarray, last: np.ndarray, width: int | None) -> tuple[np.ndarray, np.ndarray]:
    return (first, last) if width is None else (np.maximum(first, 0), np.minimum(last, width - 1))


def ellipse_spans(ellipses: np.ndarray, rows: np.ndarray, width: int | None = None):
    """First and last pixel column inside each ellipse on each row: two (K, R) arrays (empty: last < first)."""
    a, b = np.maximum(ellipses[:, 0:1], 1e-9), np.maximum(ellipses[:, 1:2], 1e-9)
    c, s = np.cos(ellipses[:, 2:3]), np.sin(ellipses[:, 2:3])
    # ((dx c + dy s) / a)^2 + ((dy c - dx s) / b)^2 <= 1  as  A dx^2 + B dy dx + C dy^2 <= 1;
    # 1 + 1e-9 keeps pixel centres exactly on the boundary inside despite rounding errors
    A, B, C = c * c / a**2 + s * s / b**2, 2 * c * s * (1 / a**2 - 1 / b**2), s * s / a**2 + c * c / b**2
    dy = rows[None, :] - ellipses[:, 4:5]
    disc = (B * dy) ** 2 - 4 * A * (C * dy * dy - 1 - 1e-9)
    root = np.sqrt(np.maximum(disc, 0))
    first = np.ceil(ellipses[:, 3:4] + (-B * dy - root) / (2 * A))
    last = np.where(disc >= 0, np.floor(ellipses[:, 3:4] + (-B * dy + root) / (2 * A)), first - 1)
    return _clip(first.astype(np.int64), last.astype(np.int64), width)


def box_spans(rows_xywh: np.ndarray, rows: np.ndarray, width: int | None = None):
    """First and last pixel column inside each x y w h rectangle on each row: two (K, R) arrays."""
    x, y, w, h = (rows_xywh[:, k:k + 1] for k in range(4))
    inside = (rows[None, :] >= y) & (rows[None, :] <= y + h)
    first = np.broadcast_to(np.ceil(x), inside.shape).astype(np.int64)
    last = np.where(inside, np.floor(x + w), first - 1).astype(np.int64)
    return _clip(first, last, width)


def _row_range(ellipses: np.ndarray, boxes: np.ndarray, height: int | None) -> np.ndarray:
    """Integer rows that any region can touch (within the image when its height is known)."""
    half = np.sqrt((ellipses[:, 0] * np.sin(ellipses[:, 2])) ** 2 + (ellipses[:, 1] * np.cos(ellipses[:, 2])) ** 2)
    lo = np.concatenate([ellipses[:, 4] - half, boxes[:, 1]])
    hi = np.concatenate([ellipses[:, 4] + half, boxes[:, 1] + boxes[:, 3]])
    if lo.size == 0:
        return np.zeros(0, np.int64)
    top, bottom = math.floor(lo.min()), math.ceil(hi.max())
    if height is not None:
        top, bottom = max(top, 0), min(bottom, height - 1)
    return np.arange(top, bottom + 1, dtype=np.int64)


def overlap_matrix(faces: np.ndarray, dets: np.ndarray, dets_are_ellipses: bool = False,
                   image_size: tuple[int, int] | None = None) -> np.ndarray:
    """(M, N) intersection over union of the pixel sets of M face ellipses and N detections.

    ``faces`` rows are FDDB ellipses (major, minor, angle, cx, cy); ``dets`` rows are
    x y w h (rectangles) or FDDB ellipses; ``image_size`` (height, width) clips regions.
    """
    faces, dets = np.asarray(faces, np.float64).reshape(-1, 5), np.asarray(dets, np.float64)
    dets = dets.reshape(-1, dets.shape[-1]) if dets.size else np.zeros((0, 5))
    height, width = image_size if image_size is not None else (None, None)
    if dets_are_ellipses:
        rows = _row_range(np.concatenate([faces, dets[:, :5]]), np.zeros((0, 4)), height)
    else:
        rows = _row_range(faces, dets[:, :4], height)
    f_first, f_last = ellipse_spans(faces, rows, width)
    d_first, d_last = (ellipse_spans if dets_are_ellipses else box_spans)(dets[:, :5], rows, width)
    f_area = np.clip(f_last - f_first + 1, 0, None).sum(1)
    d_area = np.clip(d_last - d_first + 1, 0, None).sum(1)
    inter = np.zeros((len(faces), len(dets)))
    for m in range(len(faces)):  # faces are few; each is one vectorised (N, rows) step
        runs = np.minimum(f_last[m], d_last) - np.maximum(f_first[m], d_first) + 1
        inter[m] = np.clip(runs, 0, None).sum(1)
    union = f_area[:, None] + d_area[None, :] - inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)


# ---- matching and ROC --------------------------------------------------------------------------

def match(overlaps: np.ndarray) -> np.ndarray:
    """Overlaps of the one-to-one face/detection pairs that maximise the total overlap (pairs > 0 only)."""
    from scipy.optimize import linear_sum_assignment

    r, c = linear_sum_assignment(overlaps, maximize=True)
    v = overlaps[r, c]
    return v[v > 0]


def image_counts(overlaps: np.ndarray, scores: np.ndarray):
    """Per distinct score t of one image (descending): t, discrete TP, continuous TP, FP for scores >= t."""
    order = np.argsort(-scores, kind="stable")
    s, ov = scores[order], overlaps[:, order]
    kept = np.nonzero(np.append(s[1:] != s[:-1], True))[0] + 1 if len(s) else np.zeros(0, np.int64)
    tp_disc, tp_cont = np.zeros(len(kept)), np.zeros(len(kept))
    if len(ov):
        for i, k in enumerate(kept):
            v = match(ov[:, :k])
            tp_disc[i], tp_cont[i] = np.count_nonzero(v > 0.5), v.sum()
    return s[kept - 1], tp_disc, tp_cont, kept - tp_disc


def roc(per_image: list[tuple], faces: int) -> dict[str, np.ndarray]:
    """Pool image_counts over images: one ROC point per distinct score, highest threshold first."""
    if faces <= 0:
        raise ValueError("no annotated faces to evaluate")
    empty = [np.zeros(0)]
    thr = np.concatenate([p[0] for p in per_image] + empty)
    # each image's counts are cumulative over its own thresholds: pool their increments
    steps = [np.concatenate([np.diff(p[k], prepend=0.0) for p in per_image] + empty) for k in (1, 2, 3)]
    grid = np.unique(thr)[::-1]
    at = np.searchsorted(-grid, -thr)
    curve = {"threshold": grid}
    for key, step in zip(("tp_discrete", "tp_continuous", "fp"), steps):
        curve[key] = np.cumsum(np.bincount(at, step, minlength=len(grid)))
    curve["tpr_discrete"] = curve["tp_discrete"] / faces
    curve["tpr_continuous"] = curve["tp_continuous"] / faces
    return curve


def tpr_at_fp(fp: np.ndarray, tpr: np.ndarray, thresholds: np.ndarray, targets=FP_TARGETS) -> dict[str, dict]:
    """TPR at the point with the largest FP count <= each target (the last point when never reached)."""
    fp, out = np.rint(fp).astype(np.int64), {}
    for target in targets:
        if len(fp) == 0 or fp.max() < target:
            i = len(fp) - 1
        else:
            ok = np.nonzero(fp <= target)[0]
            i = ok[fp[ok] == fp[ok].max()][-1] if len(ok) else -1
        point = ({"tpr": 0.0, "fp": 0, "threshold": None} if i < 0 else
                 {"tpr": round(float(tpr[i]), 4), "fp": int(fp[i]), "threshold": float(thresholds[i])})
        out[str(target)] = {**point, "reached": bool(len(fp) and fp.max() >= target)}
    return out


def evaluate(annotations: dict[str, np.ndarray], detections: dict[str, np.ndarray],
             sizes: dict[str, tuple[int, int]] | None = None, ellipse_fit: bool | EllipseFit = False) -> dict:
    """Discrete and continuous ROC over the annotated images; detections are x y w h score rows."""
    fit = EllipseFit() if ellipse_fit is True else ellipse_fit or None
    per_image, faces = [], 0
    for name, ell in annotations.items():
        faces += len(ell)
        rows = np.asarray(detections.get(name, np.zeros((0, 5))), np.float64).reshape(-1, 5)
        regions = rows_to_ellipses(rows, fit) if fit else rows
        ov = overlap_matrix(ell, regions, fit is not None, (sizes or {}).get(name))
        per_image.append(image_counts(ov, rows[:, 4]))
    curve = roc(per_image, faces)
    return {"faces": faces, "images": len(annotations),
            "tpr_at_fp": {kind: tpr_at_fp(curve["fp"], curve[f"tpr_{kind}"], curve["threshold"])
                          for kind in ("discrete", "continuous")},
            "curves": {"threshold": curve["threshold"].tolist(), "fp": np.rint(curve["fp"]).astype(int).tolist(),
                       "tpr_discrete": curve["tpr_discrete"].tolist(),
                       "tpr_continuous": curve["tpr_continuous"].tolist()}}


# ---- report and run ----------------------------------------------------------------------------

def plot_roc(curves: dict, path: Path, title: str) -> Path | None:
    """Discrete and continuous ROC in one PNG (needs matplotlib; skipped without it)."""
    from openmtcnn.evaluate.report import plot_png

    fp = np.asarray(curves["fp"])

    def draw(ax) -> None:
        for kind in ("discrete", "continuous"):
            ax.plot(np.r_[0, fp], np.r_[0, curves[f"tpr_{kind}"]], lw=2, label=kind)
        right = max(1, min(int(fp.max()) if fp.size else 1, 2000))
        ax.set(xlabel="false positives", ylabel="true positive rate", xlim=(0, right), ylim=(0, 1.01), title=title)
        ax.grid(alpha=0.3)
        ax.legend(loc="lower right")

    return plot_png(path, draw)


def summary(results: dict, out_dir: str | os.PathLike) -> str:
    """One line: discrete and continuous TPR at 1000 false positives, where the files went."""
    from openmtcnn.evaluate.loop import failed_note

    t = results["tpr_at_fp"]
    note = "" if t["discrete"]["1000"]["reached"] else " (never reaches 1000 FP: last point)"
    return (f"TPR at 1000 FP: discrete {t['discrete']['1000']['tpr']:.4f}  continuous "
            f"{t['continuous']['1000']['tpr']:.4f}{note}  ({results['images']} images, {results['faces']} faces"
            f"{failed_note(results)}) -> {out_dir}/results.json, {out_dir}/roc.png")


def run_fddb(detector, images_dir: str | os.PathLike, folds_dir: str | os.PathLike, out_dir: str | os.PathLike,
             ellipse_fit: bool | EllipseFit = False, settings: dict | None = None,
             show_progress: bool = True) -> dict:
    """Detect on every image of the folds present, write fold-XX-out.txt files, results.json and roc.png.

    An image that cannot be read or detected on is listed under "failed", written with
    no detections and its faces count as missed (what the official tool would report
    on the same files); the run goes on.
    """
    from openmtcnn.evaluate.loop import detect_all, failed_report

    images_dir, out = Path(images_dir), Path(out_dir)
    if not images_dir.is_dir():
        raise FileNotFoundError(f"FDDB images folder not found: {images_dir}")
    folds = load_folds(folds_dir)
    fit = EllipseFit() if ellipse_fit is True else ellipse_fit or None
    annotations = {name: ell for faces in folds.values() for name, ell in faces.items()}
    detections, sizes, failed = {}, {}, []
    for o in detect_all(detector.detect, list(annotations), lambda n: images_dir / f"{n}.jpg", "fddb", show_progress):
        if o.found is None:
            failed.append(o)
            continue
        sizes[o.item] = o.size
        detections[o.item] = boxes_to_rows(o.found.boxes, o.found.scores)
    for fold, faces in folds.items():
        write_detections(out / f"fold-{fold:02d}-out.txt", list(faces), detections)
        if fit:
            write_detections(out / f"fold-{fold:02d}-ellipses-out.txt", list(faces),
                             {k: rows_to_ellipses(v, fit) for k, v in detections.items()}, ellipses=True)
    scores = evaluate(annotations, detections, sizes, fit or False)
    results = {"tpr_at_fp": scores["tpr_at_fp"], "images": scores["images"], "faces": scores["faces"],
               "folds": list(folds), "detections": int(sum(len(v) for v in detections.values())),
               "failed": failed_report(failed), "faces_in_failed_images": sum(len(annotations[o.item]) for o in failed),
               "ellipse_fit": fit._asdict() if fit else None, "settings": settings or {},
               "protocol": PROTOCOL, "curves": scores["curves"]}
    write_json(out / "results.json", results)
    plot_roc(results["curves"], out / "roc.png",
             f"FDDB folds {', '.join(map(str, folds))} ({results['images']} images)")
    return results
