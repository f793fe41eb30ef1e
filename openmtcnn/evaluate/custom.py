"""Detection accuracy on your own annotated images: NumPy arrays, COCO JSON or YOLO txt labels.

Protocol, exactly:

- Boxes are x1 y1 x2 y2 in pixels, width x2 - x1 (as the detector's); overlap is the plain
  intersection over union (``openmtcnn.geometry.iou_matrix``).
- Per image, detections are matched greedily in order of descending score (ties: the
  detector's order): each takes the still-unmatched face it overlaps most, if that overlap
  is >= ``iou``; each face is matched at most once. A matched detection is a true positive.
- Don't-care faces (COCO ``iscrowd``, or any ``ignore`` mask) are neither found nor missed:
  a detection left unmatched whose intersection with one covers >= ``iou`` of the
  detection's own area (COCO's crowd rule; several may fall in one crowd) is neither a
  true nor a false positive. Other unmatched detections are false positives; unmatched
  counted faces are false negatives.
- Over the whole set: the precision-recall curve has one point per distinct score
  (detections with equal scores enter together, so the order of ties cannot matter); AP
  is the all-point VOC area under it (``openmtcnn.evaluate.ap.voc_ap``); the best-F1
  point is the highest score threshold reaching the largest F1. TP/FP/FN, precision,
  recall and F1 are also given at one score threshold (default: every detection the
  detector returned, i.e. its own thresholds).
- An image that cannot be read is listed under "failed": it adds no detections and its
  faces count as missed (``openmtcnn.evaluate.loop``).

Face detection is a heavily imbalanced problem: almost every window of an image is not a
face, so there is no meaningful count of true negatives, and accuracy (or anything else
built on true negatives) says nothing. That is why precision, recall, F1 and AP are reported.
"""
from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any, NamedTuple, Sequence

import numpy as np

from openmtcnn.geometry import iou_matrix
from openmtcnn.detect.image import IMAGE_EXTS, image_files
from openmtcnn.evaluate.ap import voc_ap
from openmtcnn.evaluate.loop import detect_all, failed_note, failed_report
from openmtcnn.fileio import write_json

BOX_FORMATS = ("xyxy", "xywh")


class Sample(NamedTuple):
    """One annotated image: the image (uint8 array or path), faces x1 y1 x2 y2, don't-care mask, a name."""

    image: Any
    boxes: np.ndarray  # (M, 4) float64
    ignore: np.ndarray  # (M,) bool: don't-care faces (crowd)
    name: str


def as_sample(item: Sample | Sequence, index: int = 0) -> Sample:
    """A Sample from a Sample or an (image, boxes[, ignore]) tuple, so plain pairs work as datasets."""
    if isinstance(item, Sample):
        return item
    if not isinstance(item, (tuple, list)) or len(item) not in (2, 3):
        raise ValueError(f"dataset item {index}: expected (image, boxes) or (image, boxes, ignore), "
                         f"got {type(item).__name__}")
    boxes = _box_array(item[1], f"dataset item {index}")
    ignore = np.zeros(len(boxes), bool) if len(item) == 2 or item[2] is None else np.asarray(item[2], bool)
    if ignore.shape != (len(boxes),):
        raise ValueError(f"dataset item {index}: ignore mask has shape {ignore.shape}, expected ({len(boxes)},)")
    name = str(item[0]) if isinstance(item[0], (str, os.PathLike)) else f"image {index}"
    return Sample(item[0], boxes, ignore, name)


# ---- boxes ---------------------------------------------------------------------------------------

def to_xyxy(boxes: np.ndarray, box_format: str = "xyxy") -> np.ndarray:
    """(M, 4) boxes in ``xyxy`` or ``xywh`` (x, y, width, height) -> float64 x1 y1 x2 y2."""
    if box_format not in BOX_FORMATS:
        raise ValueError(f"box format must be one of {', '.join(BOX_FORMATS)}, got {box_format!r}")
    out = np.array(boxes, np.float64).reshape(-1, 4)
    if box_format == "xywh":
        out[:, 2:] += out[:, :2]
    return out


def _box_array(boxes: Any, what: str) -> np.ndarray:
    """(M, 4) float64 from anything array-like holding M boxes, or a ValueError naming ``what``."""
    try:
        b = np.asarray(boxes if boxes is not None else np.zeros((0, 4)), np.float64)
    except (TypeError, ValueError) as e:
        raise ValueError(f"{what}: boxes are not numeric ({e})") from None
    if b.size == 0:
        return np.zeros((0, 4))
    if b.ndim == 1 and b.size == 4:
        b = b[None]
    if b.ndim != 2 or b.shape[1] != 4:
        raise ValueError(f"{what}: expected boxes of shape (M, 4), got {b.shape}")
    return b


def _check_boxes(boxes: np.ndarray, what: str) -> np.ndarray:
    """Raise when a box is not finite or has a negative width or height."""
    bad = ~np.isfinite(boxes).all(1) | (boxes[:, 2] < boxes[:, 0]) | (boxes[:, 3] < boxes[:, 1])
    if bad.any():
        i = int(np.argmax(bad))
        raise ValueError(f"{what}: box {i} is not a valid x1 y1 x2 y2 box: {boxes[i].tolist()} "
                         "(wrong --box-format?)")
    return boxes


def intersection_over_first(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pairwise intersection area over the area of each box of ``a`` (COCO's overlap with a crowd)."""
    w = np.minimum(a[:, None, 2], b[None, :, 2]) - np.maximum(a[:, None, 0], b[None, :, 0])
    h = np.minimum(a[:, None, 3], b[None, :, 3]) - np.maximum(a[:, None, 1], b[None, :, 1])
    area = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    return np.maximum(w, 0) * np.maximum(h, 0) / np.maximum(area, 1e-12)[:, None]


# ---- matching and metrics ------------------------------------------------------------------------

def match_image(boxes: np.ndarray, scores: np.ndarray, gt: np.ndarray, ignore: np.ndarray | None = None,
                iou: float = 0.5) -> tuple[np.ndarray, np.ndarray]:
    """Greedy matching by descending score: per detection 1 (TP), 0 (FP) or -1 (don't care); per face its detection.

    Computed in rounds rather than one detection at a time: each round every pending
    detection picks its best free face; the leading run of pending detections whose picks
    are all different is exactly what the one-at-a-time loop would decide, so it is kept.
    """
    n, m = len(boxes), len(gt)
    ignore = np.zeros(m, bool) if ignore is None else np.asarray(ignore, bool)
    outcome, det_of_gt = np.zeros(n, np.int8), np.full(m, -1, np.int64)
    if n == 0:
        return outcome, det_of_gt
    order = np.argsort(-np.asarray(scores, np.float64), kind="stable")
    sorted_boxes = np.asarray(boxes, np.float64)[order]
    counted = np.nonzero(~ignore)[0]
    overlap = iou_matrix(sorted_boxes, gt[counted]) if counted.size else np.zeros((n, 0))
    allowed = overlap >= iou
    match, taken = np.full(n, -1, np.int64), np.zeros(counted.size, bool)
    pending = np.nonzero(allowed.any(1))[0]
    while pending.size:
        free = allowed[pending] & ~taken
        pick = np.where(free, overlap[pending], -np.inf).argmax(1)
        has = free.any(1)
        key = np.where(has, pick, -1 - np.arange(pending.size))  # no pick: a key of its own
        _, first = np.unique(key, return_index=True)
        repeat = np.ones(pending.size, bool)
        repeat[first] = False
        stop = int(np.argmax(repeat)) if repeat.any() else pending.size
        decided = np.nonzero(has[:stop])[0]
        match[pending[decided]] = pick[decided]
        taken[pick[decided]] = True
        pending = pending[stop:]
    result = (match >= 0).astype(np.int8)
    crowd = np.nonzero(ignore)[0]
    if crowd.size:
        in_crowd = (intersection_over_first(sorted_boxes, gt[crowd]) >= iou).any(1)
        result[(match < 0) & in_crowd] = -1
    outcome[order] = result
    hit = match >= 0
    det_of_gt[counted[match[hit]]] = order[hit]
    return outcome, det_of_gt


def pr_curve(scores: np.ndarray, outcome: np.ndarray, faces: int) -> dict[str, np.ndarray]:
    """Precision and recall at each distinct score (descending), from per-detection outcomes 1/0/-1."""
    order = np.argsort(-scores, kind="stable")
    s, o = scores[order], outcome[order]
    tp, fp = np.cumsum(o == 1), np.cumsum(o == 0)
    last = np.nonzero(np.r_[s[1:] != s[:-1], True])[0] if s.size else np.zeros(0, np.int64)
    last = last[tp[last] + fp[last] > 0]  # a leading run of don't-care detections has no precision
    tp, fp = tp[last].astype(np.float64), fp[last].astype(np.float64)
    recall = tp / faces if faces else np.full(tp.shape, np.nan)
    return {"thresholds": s[last].astype(np.float64), "precision": tp / (tp + fp), "recall": recall,
            "tp": tp, "fp": fp}


def _ratio(a: float, b: float) -> float:
    return a / b if b else math.nan


def detection_metrics(predictions: Sequence[tuple[np.ndarray, np.ndarray]], ground_truth: Sequence[np.ndarray],
                      iou: float = 0.5, ignore: Sequence[np.ndarray | None] | None = None,
                      score_threshold: float | None = None) -> dict:
    """Counts, precision, recall, F1, AP, best-F1 point and PR curve of detections against faces, per image lists.

    ``predictions[i]`` is (boxes (N, 4) x1 y1 x2 y2, scores (N,)) for image i,
    ``ground_truth[i]`` its faces (M, 4) x1 y1 x2 y2, ``ignore[i]`` an optional (M,) bool
    mask of don't-care faces. Precision is NaN without detections, recall and AP without faces.
    Face detection is heavily imbalanced (no true-negative count is meaningful), so these
    are the figures to read, not accuracy.
    """
    if len(predictions) != len(ground_truth):
        raise ValueError(f"{len(predictions)} predictions for {len(ground_truth)} ground-truth images")
    if ignore is not None and len(ignore) != len(ground_truth):
        raise ValueError(f"{len(ignore)} ignore masks for {len(ground_truth)} ground-truth images")
    if not 0 <= iou <= 1:
        raise ValueError(f"IoU threshold must be in [0, 1], got {iou}")
    scores, outcomes, image_of, faces = [], [], [], np.zeros(len(ground_truth), np.int64)
    crowd = np.zeros(len(ground_truth), np.int64)
    for i, ((boxes, s), gt) in enumerate(zip(predictions, ground_truth)):
        boxes, gt = _box_array(boxes, f"predictions of image {i}"), _box_array(gt, f"ground truth of image {i}")
        s = np.asarray(s, np.float64).reshape(-1)
        if len(s) != len(boxes):
            raise ValueError(f"predictions of image {i}: {len(boxes)} boxes but {len(s)} scores")
        ign = np.zeros(len(gt), bool) if ignore is None or ignore[i] is None else np.asarray(ignore[i], bool)
        if ign.shape != (len(gt),):
            raise ValueError(f"ignore mask of image {i} has shape {ign.shape}, expected ({len(gt)},)")
        outcomes.append(match_image(boxes, s, gt, ign, iou)[0])
        scores.append(s)
        image_of.append(np.full(len(s), i))
        faces[i], crowd[i] = int((~ign).sum()), int(ign.sum())
    s = np.concatenate(scores) if scores else np.zeros(0)
    o = np.concatenate(outcomes) if outcomes else np.zeros(0, np.int8)
    img = np.concatenate(image_of) if image_of else np.zeros(0, np.int64)
    n_faces = int(faces.sum())
    curve = pr_curve(s, o, n_faces)
    ap = voc_ap(curve["recall"], curve["precision"]) if n_faces else math.nan
    keep = np.ones(len(s), bool) if score_threshold is None else s >= score_threshold
    k = len(ground_truth)
    tp_img = np.bincount(img[keep & (o == 1)], minlength=k)
    fp_img = np.bincount(img[keep & (o == 0)], minlength=k)
    ign_img = np.bincount(img[keep & (o == -1)], minlength=k)
    tp, fp = int(tp_img.sum()), int(fp_img.sum())
    fn = n_faces - tp
    precision, recall = _ratio(tp, tp + fp), _ratio(tp, n_faces)
    f1_curve = np.divide(2 * curve["tp"], 2 * curve["tp"] + curve["fp"] + (n_faces - curve["tp"]),
                         out=np.zeros_like(curve["tp"]), where=curve["tp"] > 0)
    best = int(np.argmax(f1_curve)) if f1_curve.size else -1
    best_f1 = ({"threshold": float(curve["thresholds"][best]), "precision": float(curve["precision"][best]),
                "recall": float(curve["recall"][best]), "f1": float(f1_curve[best])} if best >= 0 and n_faces
               else {"threshold": None, "precision": math.nan, "recall": math.nan, "f1": math.nan})
    return {"iou": float(iou), "score_threshold": score_threshold, "images": k, "faces": n_faces,
            "ignored_faces": int(crowd.sum()), "detections": int(keep.sum()), "tp": tp, "fp": fp, "fn": fn,
            "ignored_detections": int(ign_img.sum()), "precision": precision, "recall": recall,
            "f1": _ratio(2 * tp, 2 * tp + fp + fn), "ap": ap, "best_f1": best_f1,
            "curve": {"thresholds": curve["thresholds"].tolist(), "precision": curve["precision"].tolist(),
                      "recall": curve["recall"].tolist()},
            "per_image": [{"faces": int(faces[i]), "tp": int(tp_img[i]), "fp": int(fp_img[i]),
                           "fn": int(faces[i] - tp_img[i]), "ignored_detections": int(ign_img[i])}
                          for i in range(k)]}


# ---- loaders: NumPy arrays -----------------------------------------------------------------------

PICKLE_HINT = ("it holds Python objects (per-image box lists), and loading those runs pickle, which can "
               "execute code: pass --allow-pickle (allow_pickle=True) if you trust the file, or save the "
               "boxes as a numeric (K, 5) array of rows image_index x1 y1 x2 y2")


def _np_load(path: Path, allow_pickle: bool, what: str, key: str | None = None, mmap: bool = False):
    """One array from a .npy, or array ``key`` of an .npz, with errors that name the file and what is wrong."""
    if not path.is_file():
        raise FileNotFoundError(f"{what} file not found: {path}")
    try:
        obj = np.load(path, allow_pickle=allow_pickle, mmap_mode="r" if mmap else None)
        if not isinstance(obj, np.lib.npyio.NpzFile):
            if key is not None:
                raise ValueError(f"{path}: expected an .npz archive holding {key!r}")
            return obj
        with obj:
            if key is None:
                raise ValueError(f"{path}: expected a .npy array, got an .npz archive")
            if key not in obj.files:
                raise ValueError(f"{path}: no {key!r} array in the archive (it has: {', '.join(obj.files) or 'none'})")
            return obj[key]
    except ValueError as e:
        msg = str(e)
        if msg.startswith(str(path)):
            raise
        if "Object arrays" in msg or "Python objects" in msg:
            if what == "labels":
                raise ValueError(f"{path}: cannot load the labels without pickle: {PICKLE_HINT}") from None
            raise ValueError(f"{path}: {what} must be a uint8 array, got Python objects") from None
        if "pickled" in msg:
            raise ValueError(f"{path}: not a .npy / .npz file") from None
        raise ValueError(f"{path}: cannot read {what} ({msg})") from None
    except (OSError, EOFError) as e:
        raise ValueError(f"{path}: cannot read {what} ({e})") from None


def parse_labels(labels: Any, n_images: int, box_format: str = "xyxy", what: str = "labels") -> list[np.ndarray]:
    """Per-image (M, 4) x1 y1 x2 y2 boxes from a list / object array of per-image boxes, (N, M, 4), or (K, 5) rows."""
    if box_format not in BOX_FORMATS:
        raise ValueError(f"box format must be one of {', '.join(BOX_FORMATS)}, got {box_format!r}")
    arr = labels if isinstance(labels, np.ndarray) else None
    if arr is not None and arr.dtype != object and arr.ndim == 2:
        if arr.shape[1] != 5:
            raise ValueError(f"{what}: a 2-D label array must have rows image_index x1 y1 x2 y2 "
                             f"(shape (K, 5)), got {arr.shape}")
        rows = np.asarray(arr, np.float64)
        idx = rows[:, 0]
        bad = (idx != np.round(idx)) | (idx < 0) | (idx >= n_images) | ~np.isfinite(idx)
        if bad.any():
            r = int(np.argmax(bad))
            raise ValueError(f"{what}: row {r} has image index {idx[r]:g}, expected an integer in 0..{n_images - 1}")
        idx = idx.astype(np.int64)
        order = np.argsort(idx, kind="stable")
        boxes = to_xyxy(rows[order, 1:], box_format)
        per_image = np.split(boxes, np.cumsum(np.bincount(idx, minlength=n_images))[:-1])
    else:
        if arr is not None and arr.ndim == 0:
            raise ValueError(f"{what}: expected per-image boxes, got a single value")
        items = list(labels)
        if len(items) != n_images:
            raise ValueError(f"{what}: boxes for {len(items)} images, but there are {n_images} images")
        per_image = [to_xyxy(_box_array(b, f"{what}, image {i}"), box_format) for i, b in enumerate(items)]
    for i, b in enumerate(per_image):
        _check_boxes(b, f"{what}, image {i}")
    return per_image


def _check_images(images: np.ndarray, what: str) -> np.ndarray:
    if images.dtype != np.uint8 or not (images.ndim == 3 or (images.ndim == 4 and images.shape[3] == 3)):
        raise ValueError(f"{what}: images must be a uint8 array N x H x W x 3 (RGB) or N x H x W (grey), "
                         f"got {images.dtype} {images.shape}")
    return images


def from_arrays(images: np.ndarray, labels: Any, box_format: str = "xyxy", what: str = "labels") -> list[Sample]:
    """A dataset from in-memory images (N x H x W x 3 or N x H x W uint8) and labels as ``parse_labels`` takes."""
    images = _check_images(np.asarray(images), what)
    boxes = parse_labels(labels, len(images), box_format, what)
    return [Sample(images[i], b, np.zeros(len(b), bool), f"image {i}") for i, b in enumerate(boxes)]


def load_arrays(images: str | os.PathLike, labels: str | os.PathLike | None = None, box_format: str = "xyxy",
                allow_pickle: bool = False) -> list[Sample]:
    """A dataset from an images .npy and a labels .npy, or one .npz holding ``images`` and ``boxes``.

    Object arrays (per-image box lists) need ``allow_pickle``: loading them runs pickle.
    """
    images, labels_path = Path(images), None if labels is None else Path(labels)
    is_npz = images.suffix.lower() == ".npz"
    imgs = _np_load(images, False, "images", key="images" if is_npz else None, mmap=not is_npz)
    _check_images(imgs, str(images))
    if labels_path is None:
        if not is_npz:
            raise ValueError(f"{images}: a labels file is needed (or an .npz holding 'images' and 'boxes')")
        labels_path = images
    key = "boxes" if labels_path.suffix.lower() == ".npz" else None
    return from_arrays(imgs, _np_load(labels_path, allow_pickle, "labels", key=key), box_format, str(labels_path))


# ---- loaders: COCO JSON ---------------------------------------------------------------------------

def _coco_categories(path: Path, data: dict, wanted: Sequence[str | int]) -> set:
    """Category ids selected by names or ids (names first: a category may be called "1")."""
    cats = data.get("categories") or []
    try:
        by_name = {}
        for c in cats:
            by_name.setdefault(str(c["name"]), set()).add(c["id"])
        ids = {c["id"] for c in cats}
    except (KeyError, TypeError):
        raise ValueError(f"{path}: every category needs an 'id' and a 'name'") from None
    out = set()
    for w in wanted:
        if str(w) in by_name:
            out |= by_name[str(w)]
            continue
        try:
            wid = int(w)
        except (TypeError, ValueError):
            wid = None
        if wid is not None and (wid in ids or not cats):
            out.add(wid)
            continue
        known = ", ".join(f"{c['id']}: {c['name']}" for c in cats) or "none"
        raise ValueError(f"{path}: no category {w!r} (categories: {known})")
    return out


def load_coco(annotations: str | os.PathLike, images_dir: str | os.PathLike,
              categories: Sequence[str | int] | None = None) -> list[Sample]:
    """A dataset from a COCO JSON file: bbox [x, y, w, h], ``iscrowd``/``ignore`` as don't care, optional categories."""
    path, root = Path(annotations), Path(images_dir)
    if not path.is_file():
        raise FileNotFoundError(f"COCO annotation file not found: {path}")
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"{path}: not valid JSON ({e})") from None
    if not isinstance(data, dict) or not isinstance(data.get("images"), list) \
            or not isinstance(data.get("annotations"), list):
        raise ValueError(f"{path}: not COCO format (needs 'images' and 'annotations' lists)")
    try:
        ids = [im["id"] for im in data["images"]]
        names = [str(im["file_name"]) for im in data["images"]]
    except (KeyError, TypeError):
        raise ValueError(f"{path}: every image needs an 'id' and a 'file_name'") from None
    position = {i: k for k, i in enumerate(ids)}
    if len(position) != len(ids):
        raise ValueError(f"{path}: image ids are not unique")
    anns = data["annotations"]
    if categories:
        keep = _coco_categories(path, data, categories)
        anns = [a for a in anns if isinstance(a, dict) and a.get("category_id") in keep]
    try:
        image_pos = np.array([position[a["image_id"]] for a in anns], np.int64)
    except KeyError as e:
        raise ValueError(f"{path}: an annotation refers to image id {e}, which is not in 'images'") from None
    except TypeError:
        raise ValueError(f"{path}: every annotation needs an 'image_id'") from None
    bad = [k for k, a in enumerate(anns) if not (isinstance(a.get("bbox"), list) and len(a["bbox"]) == 4
                                                 and all(isinstance(v, (int, float)) for v in a["bbox"]))]
    if bad:
        a = anns[bad[0]]
        raise ValueError(f"{path}: annotation {a.get('id', bad[0])} has bbox {a.get('bbox')!r}, "
                         "expected [x, y, width, height]")
    boxes = to_xyxy(np.array([a["bbox"] for a in anns], np.float64).reshape(-1, 4), "xywh")
    crowd = np.array([bool(a.get("iscrowd", 0)) or bool(a.get("ignore", 0)) for a in anns], bool)
    _check_boxes(boxes, f"{path} (annotations in file order after the category filter)")
    order = np.argsort(image_pos, kind="stable")
    cuts = np.cumsum(np.bincount(image_pos, minlength=len(ids)))[:-1]
    per_boxes, per_crowd = np.split(boxes[order], cuts), np.split(crowd[order], cuts)
    return [Sample(root / n, b, c, n) for n, b, c in zip(names, per_boxes, per_crowd)]


# ---- loaders: YOLO txt ----------------------------------------------------------------------------

def image_size(path: Path) -> tuple[int, int] | None:
    """(width, height) as the detector will see the image (EXIF rotation applied), or None if unreadable."""
    try:
        from PIL import Image

        with Image.open(path) as im:
            w, h = im.size
            rotated = im.getexif().get(0x0112, 1) in (5, 6, 7, 8)
        return (h, w) if rotated else (w, h)
    except Exception:  # no PIL, or a file PIL cannot parse (it raises many types): ask OpenCV
        pass
    import cv2

    img = cv2.imread(str(path), cv2.IMREAD_COLOR)
    return None if img is None else (img.shape[1], img.shape[0])


def read_yolo_labels(path: Path) -> np.ndarray:
    """Rows class cx cy w h (normalised to [0, 1]) of one YOLO label file; (0, 5) when it is missing or empty."""
    if not path.is_file():
        return np.zeros((0, 5))
    lines = [(n, ln.split()) for n, ln in enumerate(path.read_text().splitlines(), 1) if ln.strip()]
    for n, fields in lines:
        if len(fields) != 5:
            raise ValueError(f"{path}:{n}: expected 'class cx cy w h', got {len(fields)} fields")
    try:
        rows = np.array([f for _, f in lines], np.float64).reshape(-1, 5)
    except ValueError:
        n = next(n for n, f in lines if not all(_is_float(v) for v in f))
        raise ValueError(f"{path}:{n}: not a number in 'class cx cy w h'") from None
    bad = (rows[:, 0] != np.round(rows[:, 0])) | (rows[:, 0] < 0) | ~np.isfinite(rows).all(1) \
        | (rows[:, 1:] < 0).any(1) | (rows[:, 1:] > 1).any(1)
    if bad.any():
        n = lines[int(np.argmax(bad))][0]
        raise ValueError(f"{path}:{n}: class must be a non-negative integer and cx cy w h normalised to [0, 1] "
                         "(pixel coordinates are not YOLO format)")
    return rows


def _is_float(v: str) -> bool:
    try:
        float(v)
        return True
    except ValueError:
        return False


def load_yolo(images_dir: str | os.PathLike, labels_dir: str | os.PathLike,
              classes: Sequence[int] | None = None) -> list[Sample]:
    """A dataset from YOLO folders: every image under images_dir, labels_dir/<same relative path>.txt.

    A missing label file means an image without faces. Box sizes come from the image's own
    size; an image whose size cannot be read keeps no boxes and is reported by run_custom.
    """
    root, labels = Path(images_dir), Path(labels_dir)
    for p, what in ((root, "images"), (labels, "labels")):
        if not p.is_dir():
            raise FileNotFoundError(f"YOLO {what} folder not found: {p}")
    files = image_files(root)
    if not files:
        raise ValueError(f"{root}: no images ({', '.join(sorted(IMAGE_EXTS))})")
    wanted = None if classes is None else np.array([int(c) for c in classes], np.float64)
    out = []
    for f in files:
        rel = f.relative_to(root)
        rows = read_yolo_labels(labels / rel.with_suffix(".txt"))
        if wanted is not None:
            rows = rows[np.isin(rows[:, 0], wanted)]
        size = image_size(f) if len(rows) else (0, 0)
        if size is None:
            rows = rows[:0]
            size = (0, 0)
        scale = np.array(size * 2, np.float64)
        boxes = np.hstack([rows[:, 1:3] - rows[:, 3:5] / 2, rows[:, 1:3] + rows[:, 3:5] / 2]) * scale
        out.append(Sample(f, boxes, np.zeros(len(boxes), bool), rel.as_posix()))
    return out


# ---- running and reporting ------------------------------------------------------------------------

PROTOCOL = {
    "matching": "greedy per image by descending score; a detection takes the free face it overlaps most "
                "if IoU >= iou; each face matched at most once",
    "dont_care": "crowd / ignored faces are neither found nor missed; an unmatched detection covering >= iou "
                 "of its own area with one is neither TP nor FP (COCO crowd rule)",
    "ap": "VOC all-point area under the PR curve of all detections, one point per distinct score",
    "counts": "TP/FP/FN at score_threshold (null: every detection the detector returned)",
    "why_not_accuracy": "face detection is heavily imbalanced: there is no meaningful true-negative count",
    "failed_images": "images that cannot be read are listed under failed: no detections, their faces count as "
                     "missed (false negatives)",
}


def run_custom(detector, dataset: Sequence[Sample | tuple], out_dir: str | os.PathLike | None = None,
               iou: float = 0.5, score_threshold: float | None = None, show_progress: bool = True,
               settings: dict | None = None, source: dict | None = None, per_image: bool = True) -> dict:
    """Detect on every image of the dataset, match and score; write results.json and pr_curve.png to out_dir."""
    samples = [as_sample(s, i) for i, s in enumerate(dataset)]
    if not samples:
        raise ValueError("the dataset has no images")
    none = (np.zeros((0, 4)), np.zeros(0))  # a failed image's detections
    outcomes = list(detect_all(detector.detect, samples, lambda s: s.image, "custom", show_progress))
    preds = [none if o.found is None else (o.found.boxes, o.found.scores) for o in outcomes]
    metrics = detection_metrics(preds, [s.boxes for s in samples], iou, [s.ignore for s in samples], score_threshold)
    for s, row in zip(samples, metrics["per_image"]):
        row["image"] = s.name
    if not per_image:
        del metrics["per_image"]
    failed = failed_report([o for o in outcomes if o.found is None], lambda s: s.name)
    results = {"source": source or {}, "settings": settings or {}, "protocol": PROTOCOL, "failed": failed, **metrics}
    if out_dir is not None:
        save_custom(results, out_dir)
    return results


def plot_pr(results: dict, path: str | os.PathLike, title: str = "Precision-recall") -> Path | None:
    """The PR curve with the best-F1 point and the counted operating point; None without matplotlib."""
    from openmtcnn.evaluate.report import plot_png

    c, b, ap = results["curve"], results["best_f1"], results["ap"]

    def draw(ax) -> None:
        ax.plot(c["recall"], c["precision"], lw=2, label=f"AP {ap:.4f}" if ap == ap else "AP n/a")
        if b["threshold"] is not None:
            ax.plot([b["recall"]], [b["precision"]], "o", label=f"best F1 {b['f1']:.3f} at score {b['threshold']:.3f}")
        if results["precision"] == results["precision"] and results["recall"] == results["recall"]:
            t = results["score_threshold"]
            ax.plot([results["recall"]], [results["precision"]], "s",
                    label=f"F1 {results['f1']:.3f} at " + ("all detections" if t is None else f"score >= {t:g}"))
        ax.set(xlabel="recall", ylabel="precision", xlim=(0, 1), ylim=(0, 1.01), title=title)
        ax.grid(alpha=0.3)
        ax.legend(loc="lower left")

    return plot_png(path, draw)


def save_custom(results: dict, out_dir: str | os.PathLike) -> Path:
    """Write results.json (NaN as null) and pr_curve.png (when matplotlib is installed); return the JSON path."""
    out = Path(out_dir)
    path = write_json(out / "results.json", results, digits=6)
    plot_pr(results, out / "pr_curve.png",
            f"{results['images']} images, {results['faces']} faces, IoU >= {results['iou']:g}")
    return path


def summary(results: dict) -> str:
    """One line with the headline figures."""
    f = lambda v: "n/a" if v is None or not math.isfinite(v) else f"{v:.4f}"  # noqa: E731
    b = results["best_f1"]
    best = "n/a" if b["threshold"] is None else f"{b['f1']:.4f} at score {b['threshold']:.4f}"
    return (f"AP {f(results['ap'])}  precision {f(results['precision'])}  recall {f(results['recall'])}  "
            f"F1 {f(results['f1'])}  (TP {results['tp']}  FP {results['fp']}  FN {results['fn']}; "
            f"{results['images']} images{failed_note(results)}, {results['faces']} faces, "
            f"IoU >= {results['iou']:g})  best F1 {best}")
