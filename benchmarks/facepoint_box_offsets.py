"""How CNN_FacePoint's face boxes sit against a detector's WIDER-style boxes, as fractions of the box.

CNN_FacePoint boxes run from the brows to the mouth; WIDER's from the hairline to below the chin.
This matches a weight set's detections (IoU >= 0.4) to each CNN_FacePoint train face and prints the
median offsets (x1, y1, x2, y2) / (w, h, w, h) that turn the one convention into the other; the
figures of the former 958-picture set (``trained-subset``) are the constants of
``openmtcnn.data.sources.FACEPOINT_TO_WIDER``.

    python benchmarks/facepoint_box_offsets.py ../shared/data/cnn_facepoint --weights trained published
"""
from __future__ import annotations

import argparse
import json

import numpy as np

from openmtcnn import MTCNN
from openmtcnn.geometry import iou_matrix
from openmtcnn.data.sources import load_rgb, read_facepoint
from openmtcnn.progress import progress


def offsets(weights: str, faces: list, threads: int) -> dict:
    """Median and quartiles of the matched detections' offsets, and how many faces had none."""
    detector = MTCNN(weights=weights, threads=threads)
    rows = []
    for face in progress(faces, desc=weights):
        found = detector.detect(load_rgb(face.path)).boxes
        if len(found) == 0:
            continue
        iou = iou_matrix(np.asarray(found, np.float64), face.box[None])[:, 0]
        if iou.max() < 0.4:
            continue
        w, h = face.box[2] - face.box[0], face.box[3] - face.box[1]
        rows.append((found[iou.argmax()] - face.box) / np.array([w, h, w, h]))
    r = np.array(rows)
    q = np.percentile(r, [25, 50, 75], axis=0).round(3).tolist()
    return {"weights": weights, "faces": len(faces), "matched": len(r), "q25": q[0], "median": q[1], "q75": q[2]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("root", help="CNN_FacePoint root (trainImageList.txt)")
    ap.add_argument("--weights", nargs="+", default=["trained"])
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    faces = read_facepoint(f"{args.root}/trainImageList.txt", args.root)
    for w in args.weights:
        print(json.dumps(offsets(w, faces, args.threads)))


if __name__ == "__main__":
    main()
