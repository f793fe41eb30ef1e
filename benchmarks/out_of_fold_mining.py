"""Out-of-fold hard examples: each picture mined by earlier stages that never trained on it.

    python benchmarks/out_of_fold_mining.py --data ../shared/data --out runs/kf --base runs   # about 80 min, 2 cores

The WIDER train pictures (and CNN_FacePoint train faces) are split in two by index parity.
Per fold: a P-Net trained on it mines R-Net samples from the other fold; an R-Net trained on
that fold's mined and random crops, with the fold's P-Net, mines O-Net samples from the other
fold. The final R-Net and O-Net learn from both folds' out-of-fold sets plus the random crops
the shipped nets used (``--base``: runs/exp_r24_random/24 and runs/t3/random/48), with the
shipped nets' recipes, so the only change is where the mined samples come from. The result
is in the README ("Out-of-fold mining"); times go to OUT/times.log.
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

from openmtcnn.data import SampleConfig, generate_hard, generate_pnet, generate_random, read_wider
from openmtcnn.train.pipeline import proposer
from openmtcnn.weights.trained import export_trained

FOLDS = 2


def split_lists(wider_txt: Path, facepoint_list: Path, out: Path) -> None:
    """OUT/wider_fold{k}.txt and OUT/fp_fold{k}.txt: every FOLDS-th picture / face, from the k-th."""
    lines, blocks, i = wider_txt.read_text().splitlines(), [], 0
    while i < len(lines):  # name, count, then max(count, 1) box lines
        k = 2 + max(int(lines[i + 1]), 1)
        blocks.append(lines[i:i + k])
        i += k
    faces = [line for line in facepoint_list.read_text().splitlines() if line.strip()]
    for f in range(FOLDS):
        (out / f"wider_fold{f}.txt").write_text("\n".join(x for b in blocks[f::FOLDS] for x in b) + "\n")
        (out / f"fp_fold{f}.txt").write_text("\n".join(faces[f::FOLDS]) + "\n")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", type=Path, default=Path("../shared/data"))
    p.add_argument("--out", type=Path, default=Path("runs/kf"))
    p.add_argument("--base", type=Path, default=Path("runs"), help="folder holding the shipped nets' random sets")
    args = p.parse_args()
    wider, fp, out = args.data / "widerface", args.data / "cnn_facepoint", args.out
    images = wider / "WIDER_train" / "images"
    out.mkdir(parents=True, exist_ok=True)
    log = open(out / "times.log", "a")
    cli = [sys.executable, "-m", "openmtcnn.cli.main"]

    def timed(name: str, fn) -> None:
        t = time.perf_counter()
        fn()
        print(f"{name}: {time.perf_counter() - t:.0f} s", file=log, flush=True)

    def train(stage: str, data: list, dest: str, *extra) -> None:
        subprocess.run([*cli, "train", stage, "--data", *map(str, data), "--out", str(out / dest), *map(str, extra)],
                       check=True)

    def mine(f: int, weights: str, stage: str, size: int, dest: str) -> None:
        pictures = [(w.path, w.boxes) for w in read_wider(out / f"wider_fold{f}.txt", images)]
        generate_hard(pictures, proposer(str(out / weights), stage, threads=2), out / f"{dest}{f}",
                      SampleConfig(size=size, workers=2), tag=f"out-of-fold {weights}",
                      facepoint_list=out / f"fp_fold{f}.txt", facepoint_images=fp)

    split_lists(wider / "wider_face_split" / "wider_face_train_bbx_gt.txt", fp / "trainImageList.txt", out)
    folds = range(FOLDS)
    timed("pnet samples", lambda: [generate_pnet(out / f"wider_fold{f}.txt", images, out / f"fp_fold{f}.txt", fp,
                                                 out / f"p{f}", SampleConfig(workers=2)) for f in folds])
    for f in folds:
        timed(f"pnet{f} train", lambda: train("pnet", [out / f"p{f}/12"], f"pnet{f}", "--epochs", 48, "--threads", 2))
        export_trained({"pnet": out / f"pnet{f}/best.pt"}, out / f"w_p{f}", note="fold P-Net")
    for f in folds:  # each fold mined by the other fold's P-Net
        timed(f"mine rnet fold{f}", lambda: mine(f, f"w_p{1 - f}", "rnet", 24, "mr"))
    timed("rnet train", lambda: train("rnet", [out / "mr0/24", out / "mr1/24", args.base / "exp_r24_random/24"],
                                      "rnet", "--epochs", 16, "--steps", 400, "--threads", 2))
    random24 = SampleConfig(size=24, seed=1, workers=2, negatives=0, near=0)
    timed("random rnet fold sets", lambda: [generate_random(out / f"wider_fold{f}.txt", images, None, None,
                                                            out / f"rr{f}", random24) for f in folds])
    def fold_rnets() -> None:  # side by side, one thread each
        runs = [subprocess.Popen([*cli, "train", "rnet", "--data", str(out / f"mr{f}/24"), str(out / f"rr{f}/24"),
                                  "--out", str(out / f"rnet{f}"), "--epochs", "16", "--steps", "400", "--threads", "1"],
                                 stderr=subprocess.DEVNULL) for f in folds]
        if any(r.wait() for r in runs):
            raise RuntimeError("a fold R-Net failed to train")

    timed("rnet0/rnet1 train", fold_rnets)
    for f in folds:
        export_trained({"pnet": out / f"pnet{f}/best.pt", "rnet": out / f"rnet{f}/best.pt"}, out / f"w_pr{f}",
                       note="fold P-Net and R-Net")
    for f in folds:  # each fold mined by the other fold's P-Net and R-Net
        timed(f"mine onet fold{f}", lambda: mine(f, f"w_pr{1 - f}", "onet", 48, "mo"))
    timed("onet train", lambda: train("onet", [out / "mo0/48", out / "mo1/48", args.base / "t3/random/48"], "onet",
                                      "--epochs", 14, "--steps", 400, "--threads", 2, "--mix", 3, 2, 1, 2))


if __name__ == "__main__":
    main()
