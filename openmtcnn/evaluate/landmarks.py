"""Five-point facial landmark evaluation: normalised mean error (NME), failure rate and CED.

Lists: CNN_FacePoint (Sun et al. 2013) ``path left right top bottom x1 y1 ... x5 y5`` (box
order LEFT RIGHT TOP BOTTOM), or plain ``path x1 y1 ... x5 y5``; points in KEYPOINTS order
(left eye, right eye, nose, left mouth corner, right mouth corner).

Protocol: a face's error is the mean over its five points of the Euclidean error divided by
the inter-ocular distance (between the two annotated eye centres). Each annotated face is
matched to one detection (see ``match_faces``); a face with no match is a miss, as is every
face of an image that cannot be read (listed under "failed"). Mean NME, per-point NME,
failure rate and CED/AUC are over matched faces; the "incl. misses" figures count every
miss as a failure. Error arrays use ``inf`` for a missed face.

The metric functions take NumPy arrays and return numbers; only ``run_landmarks`` needs a
detector (anything with ``.detect(rgb_image) -> Detections``).
"""
from __future__ import annotations

import math
import os
from pathlib import Path
from typing import NamedTuple

import numpy as np

from openmtcnn.geometry import iou_matrix
from openmtcnn.detect.cascade import KEYPOINTS
from openmtcnn.evaluate.loop import detect_all, failed_note, failed_report

FORMATS = {"cnn": 15, "plain": 11}  # fields per line
MIN_IOU = 0.3
POINTS_BOX_ENLARGE = 1.8  # plain lists: square of 1.8 x the longer side of the points' bounding box
FAILURE_THRESHOLD = 0.1
CED_MAX_ERROR = 0.2


# ---- lists ---------------------------------------------------------------------------------------

class LandmarkList(NamedTuple):
    """Annotated faces of a list file, one row per line."""

    paths: list[str]  # image paths relative to the images root, "/" separated
    boxes: np.ndarray | None  # (N, 4) float64 x1 y1 x2 y2, or None for the plain format
    points: np.ndarray  # (N, 5, 2) float64 x, y in KEYPOINTS order
    fmt: str  # "cnn" or "plain"
    lines: np.ndarray  # (N,) 1-based line numbers in the file


def read_landmark_list(path: str | os.PathLike, fmt: str | None = None) -> LandmarkList:
    """Parse a CNN_FacePoint (15 fields) or plain (11 fields) list; fmt=None detects it from the first line."""
    path = Path(path)
    if fmt is not None and fmt not in FORMATS:
        raise ValueError(f"unknown landmark list format {fmt!r}; use one of {', '.join(FORMATS)}")
    if not path.is_file():
        raise FileNotFoundError(f"landmark list not found: {path}")
    paths, values, lines = [], [], []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        fields = line.split()
        if not fields or fields[0].startswith("#"):
            continue
        where = f"{path}:{number}"
        if fmt is None:
            fmt = next((k for k, n in FORMATS.items() if n == len(fields)), None)
            if fmt is None:
                raise ValueError(f"{where}: expected 15 fields (cnn: path left right top bottom x1 y1 ... x5 y5) "
                                 f"or 11 (plain: path x1 y1 ... x5 y5), got {len(fields)}")
        if len(fields) != FORMATS[fmt]:
            raise ValueError(f"{where}: expected {FORMATS[fmt]} fields for the {fmt} format, got {len(fields)}")
        try:
            row = [float(v) for v in fields[1:]]
        except ValueError:
            raise ValueError(f"{where}: coordinates must be numbers: {line.strip()!r}") from None
        if not all(math.isfinite(v) for v in row):
            raise ValueError(f"{where}: coordinates must be finite: {line.strip()!r}")
        if fmt == "cnn" and not (row[1] > row[0] and row[3] > row[2]):
            raise ValueError(f"{where}: box must be left right top bottom with right > left and bottom > top, "
                             f"got {fields[1:5]}")
        if row[-10:-8] == row[-8:-6]:
            raise ValueError(f"{where}: the two eye points coincide (inter-ocular distance 0)")
        paths.append(fields[0].replace("\\", "/"))
        values.append(row)
        lines.append(number)
    if not paths:
        raise ValueError(f"{path}: no faces listed")
    v = np.array(values, np.float64)
    boxes = v[:, [0, 2, 1, 3]] if fmt == "cnn" else None  # left right top bottom -> x1 y1 x2 y2
    return LandmarkList(paths, boxes, v[:, -10:].reshape(-1, 5, 2), fmt, np.array(lines))


# ---- metrics -------------------------------------------------------------------------------------

def interocular(points: np.ndarray) -> np.ndarray:
    """Distance between the left and right eye points of (N, 5, 2) annotations: the normaliser."""
    points = np.asarray(points, np.float64)
    return np.linalg.norm(points[:, 0] - points[:, 1], axis=-1)


def point_errors(pred: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """(N, 5) Euclidean error of each point divided by the face's annotated inter-ocular distance."""
    pred, gt = np.asarray(pred, np.float64), np.asarray(gt, np.float64)
    if pred.shape != gt.shape or gt.ndim != 3 or gt.shape[1:] != (5, 2):
        raise ValueError(f"predictions and annotations must both be (N, 5, 2), got {pred.shape} and {gt.shape}")
    iod = interocular(gt)
    if np.any(iod <= 0):
        raise ValueError(f"annotation {int(np.argmax(iod <= 0))} has coinciding eye points (inter-ocular distance 0)")
    return np.linalg.norm(pred - gt, axis=-1) / iod[:, None]


def nme(pred: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """(N,) normalised mean error per face: mean over the five points of ``point_errors``."""
    return point_errors(pred, gt).mean(axis=1)


def _errors(errors) -> np.ndarray:
    e = np.asarray(errors, np.float64).reshape(-1)
    if np.isnan(e).any() or (e < 0).any():
        raise ValueError("errors must be >= 0 (inf marks a missed face), got NaN or a negative value")
    return e


def mean_nme(errors) -> float:
    """Mean of the finite per-face errors (matched faces only); NaN when there are none."""
    e = _errors(errors)
    e = e[np.isfinite(e)]
    return float(e.mean()) if e.size else float("nan")


def failure_rate(errors, threshold: float = FAILURE_THRESHOLD) -> float:
    """Fraction of faces whose error exceeds threshold (inf, a miss, always does); NaN for no faces."""
    e = _errors(errors)
    return float(np.mean(e > threshold)) if e.size else float("nan")


def ced(errors, max_error: float = CED_MAX_ERROR, steps: int = 201) -> tuple[np.ndarray, np.ndarray]:
    """Cumulative error distribution: x in [0, max_error] and the fraction of faces with error <= x."""
    e = np.sort(_errors(errors))
    x = np.linspace(0.0, max_error, steps)
    frac = np.searchsorted(e, x, side="right") / max(e.size, 1)
    return x, frac


def ced_auc(errors, max_error: float = CED_MAX_ERROR) -> float:
    """Area under the CED from 0 to max_error divided by max_error (exact; 1 = every error 0)."""
    e = _errors(errors)
    if not e.size:
        return float("nan")
    return float(np.mean(np.clip(1.0 - e / max_error, 0.0, None)))


def summarise(per_point: np.ndarray, missed: int = 0, threshold: float = FAILURE_THRESHOLD,
              max_error: float = CED_MAX_ERROR) -> dict:
    """Every figure from matched faces' (M, 5) point errors and the number of missed faces."""
    per_point = np.asarray(per_point, np.float64).reshape(-1, 5)
    face = per_point.mean(axis=1)
    with_misses = np.concatenate([face, np.full(missed, np.inf)])
    point_means = per_point.mean(axis=0) if len(per_point) else np.full(5, np.nan)
    return {"matched": len(face), "missed": int(missed),
            "mean_nme": mean_nme(face),
            "nme_per_point": {k: float(v) for k, v in zip(KEYPOINTS, point_means)},
            "failure_threshold": threshold,
            "failure_rate": failure_rate(face, threshold),
            "failure_rate_incl_misses": failure_rate(with_misses, threshold),
            "ced_max_error": max_error,
            "auc": ced_auc(face, max_error),
            "auc_incl_misses": ced_auc(with_misses, max_error)}


# ---- matching ------------------------------------------------------------------------------------

def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pairwise intersection over union of x1 y1 x2 y2 boxes, shape (len(a), len(b))."""
    return iou_matrix(np.asarray(a, np.float64).reshape(-1, 4), np.asarray(b, np.float64).reshape(-1, 4))


def points_box(points: np.ndarray, enlarge: float = POINTS_BOX_ENLARGE) -> np.ndarray:
    """(N, 4) square face boxes: enlarge x the longer side of the five points' bounding box, same centre."""
    points = np.asarray(points, np.float64)
    lo, hi = points.min(axis=1), points.max(axis=1)
    centre, half = (lo + hi) / 2, enlarge * (hi - lo).max(axis=1, keepdims=True) / 2
    return np.concatenate([centre - half, centre + half], axis=1)


def _greedy(score: np.ndarray, allowed: np.ndarray, match: np.ndarray, used: np.ndarray, best_high: bool) -> None:
    """One-to-one assignment in order of score (ties: earlier face, then earlier detection)."""
    f, d = np.nonzero(allowed)
    s = score[f, d]
    for i in np.lexsort((d, f, -s if best_high else s)):
        if match[f[i]] < 0 and not used[d[i]]:
            match[f[i]], used[d[i]] = d[i], True


def match_faces(points: np.ndarray, det_boxes: np.ndarray, det_landmarks: np.ndarray,
                boxes: np.ndarray | None = None, min_iou: float = MIN_IOU) -> np.ndarray:
    """Index of the detection matched to each annotated face of one image, -1 for a miss.

    With annotated boxes: the detection of highest IoU >= min_iou. Without: the same with
    ``points_box`` as the face box; a face still unmatched then takes, among detections whose
    box contains the centre of its points, the one whose landmarks are closest (mean distance).
    One-to-one, best pairs first.
    """
    points = np.asarray(points, np.float64).reshape(-1, 5, 2)
    det_boxes = np.asarray(det_boxes, np.float64).reshape(-1, 4)
    det_landmarks = np.asarray(det_landmarks, np.float64).reshape(-1, 5, 2)
    match, used = np.full(len(points), -1), np.zeros(len(det_boxes), bool)
    if not len(points) or not len(det_boxes):
        return match
    iou = box_iou(points_box(points) if boxes is None else boxes, det_boxes)
    _greedy(iou, iou >= min_iou, match, used, best_high=True)
    if boxes is None and (match < 0).any():
        dist = np.linalg.norm(points[:, None] - det_landmarks[None], axis=-1).mean(axis=-1)
        c = (points.min(axis=1) + points.max(axis=1)) / 2
        inside = ((det_boxes[None, :, 0] <= c[:, None, 0]) & (c[:, None, 0] <= det_boxes[None, :, 2]) &
                  (det_boxes[None, :, 1] <= c[:, None, 1]) & (c[:, None, 1] <= det_boxes[None, :, 3]))
        _greedy(dist, inside & (match < 0)[:, None] & ~used[None], match, used, best_high=False)
    return match


# ---- running a detector --------------------------------------------------------------------------

def protocol(fmt: str, threshold: float, max_error: float) -> dict:
    """How the figures were computed, written next to them."""
    match = (f"annotated box (left right top bottom -> x1 y1 x2 y2) vs detection box, highest IoU >= {MIN_IOU}"
             if fmt == "cnn" else
             f"square box of {POINTS_BOX_ENLARGE} x the longer side of the 5 annotated points' bounding box vs "
             f"detection box, highest IoU >= {MIN_IOU}; else, among detections whose box contains the points' "
             "centre, the one with closest landmarks")
    return {"normalisation": "inter-ocular distance: between the annotated left and right eye points",
            "nme": "per face, mean over the 5 points of Euclidean error / inter-ocular distance; "
                   "mean_nme, nme_per_point, failure_rate and auc are over matched faces only",
            "matching": match + "; one detection per face; a face with no match is missed",
            "failure_rate": f"fraction of faces with NME > {threshold}",
            "failure_rate_incl_misses": "as failure_rate with every missed face counted as a failure",
            "auc": f"area under the CED (fraction of faces with NME <= x) for x in [0, {max_error}], / {max_error}",
            "failed images": "images that cannot be read are listed under failed; their faces count as missed"}


def run_landmarks(detector, list_file: str | os.PathLike, images_dir: str | os.PathLike,
                  out_dir: str | os.PathLike | None = None, fmt: str | None = None, show_progress: bool = True,
                  settings: dict | None = None, threshold: float = FAILURE_THRESHOLD,
                  max_error: float = CED_MAX_ERROR) -> dict:
    """Detect on every listed image, match faces, score landmarks; write results.json and ced.png to out_dir."""
    faces = read_landmark_list(list_file, fmt)
    root = Path(images_dir)
    if not root.is_dir():
        raise FileNotFoundError(f"images folder not found: {root}")
    groups: dict[str, list[int]] = {}
    for i, p in enumerate(faces.paths):
        groups.setdefault(p, []).append(i)
    n = len(faces.paths)
    pred = np.zeros((n, 5, 2))
    matched, evaluated, failed = np.zeros(n, bool), np.zeros(n, bool), []
    for o in detect_all(detector.detect, list(groups), lambda p: root / p, "landmarks", show_progress):
        if o.found is None:  # its faces stay unmatched: missed
            failed.append(o)
            continue
        idx, d = np.array(groups[o.item]), o.found
        m = match_faces(faces.points[idx], d.boxes, d.landmarks, None if faces.boxes is None else faces.boxes[idx])
        pred[idx[m >= 0]] = np.asarray(d.landmarks, np.float64)[m[m >= 0]]
        matched[idx[m >= 0]], evaluated[idx] = True, True
    per_point = point_errors(pred[matched], faces.points[matched])
    missed = ~matched
    per_face = np.full(n, np.nan)
    per_face[matched] = per_point.mean(axis=1)
    results = {"list": str(list_file), "images_dir": str(root), "format": faces.fmt,
               "protocol": protocol(faces.fmt, threshold, max_error), "settings": settings or {},
               "faces": n, "images": len(groups), "faces_evaluated": int(evaluated.sum()),
               **summarise(per_point, int(missed.sum()), threshold, max_error),
               "failed": failed_report(failed),
               "missed_faces": [{"path": faces.paths[i], "line": int(faces.lines[i])} for i in np.nonzero(missed)[0]],
               "nme_per_face": [None if np.isnan(v) else round(float(v), 6) for v in per_face]}
    if out_dir is not None:
        save_landmarks(results, out_dir)
    return results


def ced_errors(results: dict) -> np.ndarray:
    """Per-face errors of a results dict for the CED: matched faces' NME, then inf per missed face."""
    e = np.array([v for v in results["nme_per_face"] if v is not None], np.float64)
    return np.concatenate([e, np.full(results["missed"], np.inf)])


def summary(results: dict) -> str:
    """One line with the headline figures."""
    pct = lambda v: "n/a" if v is None or not math.isfinite(v) else f"{100 * v:.2f}%"  # noqa: E731
    t = results["failure_threshold"]
    return (f"NME {pct(results['mean_nme'])}  FR@{t} {pct(results['failure_rate'])}  "
            f"FR@{t} incl. misses {pct(results['failure_rate_incl_misses'])}  "
            f"AUC@{results['ced_max_error']} {results['auc']:.4f}  ({results['matched']} matched, "
            f"{results['missed']} missed of {results['faces']} faces, {results['images']} images"
            f"{failed_note(results)})")


def save_landmarks(results: dict, out_dir: str | os.PathLike) -> Path:
    """Write results.json (NaN as null) and ced.png (when matplotlib is installed); return the JSON path."""
    from openmtcnn.fileio import write_json

    out = Path(out_dir)
    path = write_json(out / "results.json", results, digits=6)
    curves = {f"matched faces ({results['matched']})": ced_errors(results)[:results["matched"]]}
    if results["missed"]:
        curves[f"incl. {results['missed']} missed"] = ced_errors(results)
    compare_ced(curves, out / "ced.png", results["ced_max_error"], results["failure_threshold"],
                title=f"Landmark CED: {Path(results['list']).name}")
    return path


def compare_ced(curves: dict[str, np.ndarray], path: str | os.PathLike, max_error: float = CED_MAX_ERROR,
                threshold: float = FAILURE_THRESHOLD, title: str = "Cumulative error distribution") -> Path | None:
    """Several CED curves (per-face errors, inf = missed) in one PNG; None when matplotlib is missing."""
    from openmtcnn.evaluate.report import plot_png

    def draw(ax) -> None:
        from matplotlib.ticker import FuncFormatter

        for name, errors in curves.items():
            x, y = ced(errors, max_error, steps=1001)
            label = (f"{name}  NME {100 * mean_nme(errors):.2f}%  FR {100 * failure_rate(errors, threshold):.1f}%"
                     if len(np.ravel(errors)) else f"{name}  (no faces)")
            ax.plot(x, y, lw=2, label=label)
        ax.axvline(threshold, color="grey", ls=":", lw=1)
        ax.set_xticks(np.linspace(0, max_error, 11))
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{100 * v:.4g}%"))
        ax.set(xlabel="NME (% of inter-ocular distance)", ylabel="fraction of faces", xlim=(0, max_error),
               ylim=(0, 1.01), title=title)
        ax.grid(alpha=0.3)
        ax.legend(loc="lower right", fontsize=8)

    return plot_png(path, draw)
