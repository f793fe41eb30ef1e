"""WIDER FACE evaluation by the official protocol (the eval_tools of Yang et al. 2016).

Predictions are x y w h score per face. A prediction matches the ground-truth face
it overlaps most (IoU >= 0.5, pixel-inclusive areas); faces outside a setting's
gt_list are ignored (matching one neither helps nor hurts); scores are normalised to
[0, 1] over the whole set; the PR curve is pooled over images at 1000 thresholds.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from openmtcnn.evaluate.ap import inclusive_iou, voc_ap

SETTINGS = ("easy", "medium", "hard")


def load_ground_truth(gt_dir: str | os.PathLike) -> dict[str, dict]:
    """{"event/name": {"boxes": (M, 4) x y w h, "easy"/"medium"/"hard": bool mask of counted faces}}."""
    from scipy.io import loadmat

    gt_dir = Path(gt_dir)
    paths = {s: gt_dir / f"wider_{s}_val.mat" for s in SETTINGS}
    missing = [str(p) for p in [gt_dir / "wider_face_val.mat", *paths.values()] if not p.is_file()]
    if missing:
        raise FileNotFoundError(f"WIDER FACE ground truth not found: {', '.join(missing)}")
    full = loadmat(gt_dir / "wider_face_val.mat")
    lists = {s: loadmat(p)["gt_list"] for s, p in paths.items()}
    gt = {}
    for e in range(full["event_list"].shape[0]):
        event = str(full["event_list"][e, 0].reshape(-1)[0])
        files, boxes = full["file_list"][e, 0], full["face_bbx_list"][e, 0]
        for i in range(files.shape[0]):
            b = np.asarray(boxes[i, 0], np.float64).reshape(-1, 4)
            entry = {"boxes": b}
            for s in SETTINGS:
                idx = np.asarray(lists[s][e, 0][i, 0]).reshape(-1).astype(np.int64)
                mask = np.zeros(len(b), bool)
                mask[idx[(idx >= 1) & (idx <= len(b))] - 1] = True
                entry[s] = mask
            gt[f"{event}/{str(files[i, 0].reshape(-1)[0])}"] = entry
    return gt


def image_eval(pred: np.ndarray, gt: np.ndarray, counted: np.ndarray, iou_threshold: float = 0.5):
    """For predictions sorted by score: faces recalled so far, and which are proposals (not ignored)."""
    p = pred[:, :4].copy()
    g = gt.copy()
    p[:, 2:] += p[:, :2]
    g[:, 2:] += g[:, :2]
    overlaps = inclusive_iou(p, g)
    best, idx = overlaps.max(1), overlaps.argmax(1)
    matched = best >= iou_threshold
    ignored = matched & ~counted[idx]
    hit = matched & counted[idx]
    first = np.zeros(len(p))
    hit_pos = np.nonzero(hit)[0]
    _, first_of_face = np.unique(idx[hit_pos], return_index=True)
    first[hit_pos[first_of_face]] = 1
    return np.cumsum(first), ~ignored


def image_pr(scores: np.ndarray, proposals: np.ndarray, recalled: np.ndarray, thresholds: np.ndarray):
    """(proposals, recalled faces) at each score threshold, for one image."""
    n_above = np.searchsorted(-scores, -thresholds, side="right")
    last = np.maximum(n_above - 1, 0)
    props = np.cumsum(proposals)[last]
    rec = recalled[last]
    return np.where(n_above > 0, props, 0), np.where(n_above > 0, rec, 0)


def evaluate(predictions: dict[str, np.ndarray], gt: dict[str, dict], iou_threshold: float = 0.5,
             thresh_num: int = 1000) -> dict[str, dict]:
    """AP per setting over the images that have predictions (keys "event/name", rows x y w h score)."""
    keys = [k for k in predictions if k in gt]
    if not keys:
        raise ValueError("no prediction matches an image of the ground truth (keys are 'event/name')")
    all_scores = np.concatenate([predictions[k][:, 4] for k in keys]) if keys else np.zeros(0)
    lo, hi = (all_scores.min(), all_scores.max()) if all_scores.size else (0.0, 1.0)
    span = hi - lo if hi > lo else 1.0
    thresholds = 1 - (np.arange(thresh_num) + 1) / thresh_num
    results = {}
    for s in SETTINGS:
        props, hits, faces = np.zeros(thresh_num), np.zeros(thresh_num), 0
        for k in keys:
            entry, pred = gt[k], predictions[k]
            faces += int(entry[s].sum())
            if len(entry["boxes"]) == 0 or len(pred) == 0:
                continue
            order = np.argsort(-pred[:, 4], kind="stable")
            pred = pred[order]
            scores = (pred[:, 4] - lo) / span
            recalled, proposals = image_eval(pred, entry["boxes"], entry[s], iou_threshold)
            p, h = image_pr(scores, proposals, recalled, thresholds)
            props += p
            hits += h
        precision = np.divide(hits, props, out=np.zeros_like(hits), where=props > 0)
        recall = hits / max(faces, 1)
        results[s] = {"ap": voc_ap(recall, precision), "faces": faces,
                      "precision": precision.tolist(), "recall": recall.tolist()}
    return results


def list_images(images_dir: str | os.PathLike) -> list[str]:
    """Keys "event/name" of the images under WIDER_val/images (or any event/name.jpg tree)."""
    root = Path(images_dir)
    if not root.is_dir():
        raise FileNotFoundError(f"images folder not found: {root}")
    return sorted(f"{p.parent.name}/{p.stem}" for p in root.glob("*/*.jpg"))


def write_prediction(out_dir: str | os.PathLike, key: str, rows: np.ndarray) -> Path:
    """The official per-image txt: name, count, then "x y w h score" per face."""
    path = Path(out_dir) / f"{key}.txt"
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [key.split("/")[-1], str(len(rows))] + [f"{x:.1f} {y:.1f} {w:.1f} {h:.1f} {s:.6f}" for x, y, w, h, s in rows]
    path.write_text("\n".join(lines) + "\n")
    return path


def read_predictions(pred_dir: str | os.PathLike) -> dict[str, np.ndarray]:
    """Predictions in the official layout: pred_dir/event/name.txt."""
    preds = {}
    for path in sorted(Path(pred_dir).glob("*/*.txt")):
        lines = path.read_text().split("\n")
        rows = [list(map(float, ln.split()[:5])) for ln in lines[2:] if ln.strip()]
        preds[f"{path.parent.name}/{path.stem}"] = np.array(rows, np.float64).reshape(-1, 5)
    return preds


def to_rows(boxes: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """x1 y1 x2 y2 boxes and scores -> x y w h score rows."""
    rows = np.zeros((len(boxes), 5))
    rows[:, :2] = boxes[:, :2]
    rows[:, 2:4] = boxes[:, 2:4] - boxes[:, :2]
    rows[:, 4] = scores
    return rows


def run_widerface(detector, images_dir: str | os.PathLike, gt_dir: str | os.PathLike,
                  out_dir: str | os.PathLike | None = None, show_progress: bool = True,
                  stages: bool = False) -> dict:
    """Detect on every image, write official prediction files, and score easy/medium/hard.

    With ``stages``, also count for each face of the hard setting (which holds the easy and
    medium ones) the cascade stage where it was lost, per face size. An image that cannot be
    read is listed under "failed", gets an empty prediction file and its faces count as missed.
    """
    from openmtcnn.evaluate import diagnose
    from openmtcnn.evaluate.loop import detect_all, failed_report

    images_dir = Path(images_dir)
    gt = load_ground_truth(gt_dir)
    keys = [k for k in list_images(images_dir) if k in gt]
    if not keys:
        raise ValueError(f"no image under {images_dir} is in the WIDER FACE val ground truth")

    def detect(image: np.ndarray) -> tuple:
        trace: dict[str, np.ndarray] = {}  # every stage's boxes, heard from the cascade
        keep = lambda stage, index, candidates, seconds: trace.__setitem__(stage, candidates.boxes)  # noqa: E731
        return detector.run(image, observer=keep if stages else None), trace

    preds, outcomes, heights, failed = {}, [np.zeros(0, np.int64)], [np.zeros(0)], []
    for o in detect_all(detect, keys, lambda k: images_dir / f"{k}.jpg", "widerface", show_progress):
        key = o.item
        if o.found is None:  # no detections: its faces count as missed (and stay out of the stage table)
            failed.append(o)
            preds[key] = np.zeros((0, 5))
        else:
            d, trace = o.found
            preds[key] = to_rows(d.boxes, d.scores)
            if stages:
                faces = gt[key]["boxes"][gt[key]["hard"]]
                outcomes.append(diagnose.lost_at(trace, np.hstack([faces[:, :2], faces[:, :2] + faces[:, 2:]])))
                heights.append(faces[:, 3])
        if out_dir is not None:
            write_prediction(Path(out_dir) / "predictions", key, preds[key])
    results = evaluate(preds, gt)
    results["images"] = len(keys)
    results["failed"] = failed_report(failed)
    if stages:
        results["stages"] = diagnose.stage_table(np.concatenate(outcomes), np.concatenate(heights))
    return results
