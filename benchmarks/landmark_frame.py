"""O-Net's landmark error on CNN_FacePoint test faces, cropped in two frames: the list's own box, and WIDER's.

CNN_FacePoint boxes run from the brows to the mouth; the cascade hands O-Net boxes from the
hairline to the chin (``FACEPOINT_TO_WIDER``). A net whose landmark samples were cut around the
list's boxes places points well only in that frame. This runs O-Net alone on the square crop of
each test face's box, as listed and as moved to WIDER's convention, and prints mean NME
(inter-ocular) and the failure rate at 0.1 for each weight set.

    python benchmarks/landmark_frame.py ../shared/data/cnn_facepoint --weights published trained
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from openmtcnn.data import read_facepoint, wider_frame
from openmtcnn.geometry import square_int
from openmtcnn.data.sources import load_rgb
from openmtcnn.detect import boxes as B
from openmtcnn.evaluate.landmarks import failure_rate, mean_nme, nme
from openmtcnn.progress import progress
from openmtcnn.runtime import make_nets


def onet_points(nets, faces: list) -> np.ndarray:
    """O-Net's five points for each face, from the square crop of its box, in picture coordinates."""
    squares = square_int(np.stack([f.box for f in faces])).astype(np.float64)
    out = []
    for face, sq in progress(list(zip(faces, squares)), desc="O-Net"):
        crop = B.crop_resize(load_rgb(face.path), sq[None], 48, channels_first=True)
        marks = nets("onet", crop)[2].reshape(2, 5).T
        out.append(sq[:2] + (sq[2:] - sq[:2]) * marks)
    return np.array(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("root", help="CNN_FacePoint root (testImageList.txt)")
    ap.add_argument("--weights", nargs="+", default=["published", "trained"])
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    faces = read_facepoint(Path(args.root) / "testImageList.txt", args.root)
    truth = np.stack([f.points for f in faces])
    rows = []
    for weights in args.weights:
        nets = make_nets(weights, threads=args.threads)
        for frame, listed in (("facepoint", faces), ("wider", wider_frame(faces))):
            errors = nme(onet_points(nets, listed), truth)
            rows.append({"weights": weights, "frame": frame, "faces": len(faces),
                         "nme": round(mean_nme(errors), 4), "fr_0.1": round(failure_rate(errors), 4)})
            print(json.dumps(rows[-1]))


if __name__ == "__main__":
    main()
