"""How many WIDER val faces any detection covers, and how tightly: recall ceiling and box quality.

    python benchmarks/box_recall.py runs/eval_published runs/eval_trained

Each argument is an ``openmtcnn eval widerface --out`` folder (its ``predictions/``). Per
setting, every face the setting counts gets the best IoU of any detection on its picture, at any
score: the share at IoU >= 0.5 is the recall AP can reach at the end of its curve, the mean IoU of
the faces a detection overlaps (>= 0.3) says how well the boxes fit them. Two detectors whose
boxes fit alike but whose ceilings differ lose AP by missing faces, not by loose boxes.
"""
from __future__ import annotations

import argparse
import json

import numpy as np

from openmtcnn.evaluate.widerface import SETTINGS, load_ground_truth, read_predictions
from openmtcnn.geometry import iou_matrix


def corners(xywh: np.ndarray) -> np.ndarray:
    return np.c_[xywh[:, :2], xywh[:, :2] + xywh[:, 2:4]]


def best_ious(predictions: dict[str, np.ndarray], gt: dict[str, dict], setting: str) -> np.ndarray:
    """For each counted face of the setting, the best IoU of a detection on its picture (0 if none)."""
    best = []
    for key, entry in gt.items():
        faces = entry["boxes"][entry[setting]]
        if key not in predictions or not len(faces):
            continue
        rows = predictions[key]
        if not len(rows):
            best.append(np.zeros(len(faces)))
            continue
        best.append(iou_matrix(corners(faces), corners(rows)).max(axis=1))
    return np.concatenate(best) if best else np.zeros(0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("runs", nargs="+", help="openmtcnn eval widerface --out folders")
    ap.add_argument("--gt", default="../shared/data/widerface/eval_tools/ground_truth")
    args = ap.parse_args()
    gt = load_ground_truth(args.gt)
    table = []
    for run in args.runs:
        predictions = read_predictions(f"{run}/predictions")
        for setting in SETTINGS:
            iou = best_ious(predictions, gt, setting)
            table.append({"run": run, "setting": setting, "faces": len(iou),
                          "covered_0.5": round(float(np.mean(iou >= 0.5)), 4),
                          "covered_0.7": round(float(np.mean(iou >= 0.7)), 4),
                          "mean_iou_of_overlapped": round(float(iou[iou >= 0.3].mean()), 4)})
    print(json.dumps(table, indent=1))


if __name__ == "__main__":
    main()
