"""Learning curve: one training recipe on nested subsets of the WIDER train pictures.

    python benchmarks/learning_curve.py subset --wider /tmp/wider --base ../shared/data/widerface \
        --count 1846 --out /tmp/wider_1846                 # a WIDER root with the first N pictures of a fixed order
    python benchmarks/learning_curve.py train --wider /tmp/wider_1846 --out runs/lc/1846   # the recipe, resumable
    python benchmarks/learning_curve.py evaluate --weights runs/lc/1846/weights --pictures 1846 \
        --val ../shared/data/widerface --out runs/lc/1846  # WIDER val AP, and with each stage swapped for published
    python benchmarks/learning_curve.py plot --runs runs/lc/*/curve.json --out docs/learning_curve.png

Subsets are nested: the 958 pictures of ``--base`` first, then the others in an order fixed by
``--seed``, so every larger set holds every smaller one. ``train`` runs ``RECIPE`` (the recipe of the
``trained`` weights before their longer O-Net schedule) on a root; every step resumes. ``evaluate`` writes
``OUT/curve.json``: AP of the trained cascade at the defaults, and with one stage at a time taken
from the published nets (which stage holds it back). ``plot`` draws AP against pictures (log
scale) with the published AP as lines, fits AP = a + b log10(pictures) per setting and says what
it gives at 12,880 pictures (the full WIDER train set).
"""
from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np

FULL_WIDER_TRAIN = 12880
PUBLISHED_AP = {"easy": 0.8670, "medium": 0.8283, "hard": 0.5457}  # README, defaults, same val subset
LANDMARKS = "../shared/data/cnn_facepoint"

# The recipe the curve was measured with (`trained` before its longer O-Net schedule, see
# docs/training.md), step by step ({W}: WIDER root, {L}: CNN_FacePoint root,
# {R}: run folder). R-Net and O-Net learn from mined crops plus jittered squares around the faces; O-Net
# also from landmark samples cut in WIDER's frame, its landmark loss weighted 3, and its landmark head
# is then retrained alone on those.
RECIPE = [
    "data pnet --wider {W} --landmarks {L} --out {R}/samples",
    "train pnet --data {R}/samples/12 --out {R}/pnet --epochs 48 --threads 2",
    "export trained {R} --out {R}/weights_rnet_mining",
    "data rnet --weights {R}/weights_rnet_mining --wider {W} --landmarks {L} --out {R}/samples",
    "data rnet --random --wider {W} --out {R}/random --seed 1",
    "train rnet --data {R}/samples/24 {R}/random/24 --out {R}/rnet --epochs 40 --steps 400 --threads 2",
    "export trained {R} --out {R}/weights_onet_mining",
    "data onet --weights {R}/weights_onet_mining --wider {W} --landmarks {L} --out {R}/samples",
    "data onet --random --wider {W} --out {R}/random --seed 1",
    "data onet --landmarks-only --wider {W} --landmarks {L} --landmark-frame wider --out {R}/lmk",
    "train onet --data {R}/samples/48 {R}/random/48 {R}/lmk/48 --out {R}/onet --epochs 14 --steps 400 --threads 2 "
    "--mix 2 3 1 3 --jitter 0.2 --task-weights 1 0.5 3",
    "export trained {R} --out {R}/weights",
    "train onet --data {R}/lmk/48 --init {R}/onet/best.pt --train-only heads.landmarks --mix 0 0 0 1 "
    "--out {R}/onet_lmkhead --epochs 6 --steps 400 --threads 2",
    "export trained {R} --use onet={R}/onet_lmkhead/best.pt --out {R}/weights_final",
]


def blocks(txt: Path) -> list[list[str]]:
    """The pictures of a WIDER ``*_bbx_gt.txt``, each as its lines (name, count, boxes)."""
    lines, out, i = txt.read_text().splitlines(), [], 0
    while i < len(lines):
        if not lines[i].strip():
            i += 1
            continue
        k = 2 + max(int(lines[i + 1]), 1)
        out.append(lines[i:i + k])
        i += k
    return out


def nested_order(full: list[list[str]], base: list[list[str]], seed: int) -> list[list[str]]:
    """``full``'s pictures: those of ``base`` first (in its order), then the rest shuffled by ``seed``."""
    first = {b[0] for b in base}
    rest = [b for b in full if b[0] not in first]
    order = np.random.default_rng(seed).permutation(len(rest))
    return [b for b in full if b[0] in first] + [rest[k] for k in order]


def cmd_subset(args: argparse.Namespace) -> None:
    split = Path("wider_face_split") / "wider_face_train_bbx_gt.txt"
    chosen = nested_order(blocks(Path(args.wider) / split), blocks(Path(args.base) / split), args.seed)[:args.count]
    out = Path(args.out)
    (out / split).parent.mkdir(parents=True, exist_ok=True)
    (out / split).write_text("\n".join(line for b in chosen for line in b) + "\n")
    images = out / "WIDER_train" / "images"
    images.parent.mkdir(parents=True, exist_ok=True)
    if not images.exists():
        images.symlink_to((Path(args.wider) / "WIDER_train" / "images").resolve())
    print(f"{out}: {len(chosen)} pictures")


def recipe(wider: str, run: str, landmarks: str = LANDMARKS) -> list[str]:
    """The recipe's ``openmtcnn`` commands for one WIDER root and run folder."""
    return [step.format(W=wider, L=landmarks, R=run) for step in RECIPE]


def cmd_train(args: argparse.Namespace) -> None:
    Path(args.out).mkdir(parents=True, exist_ok=True)
    for step in recipe(args.wider, args.out, args.landmarks):
        print(f"openmtcnn {step}", flush=True)
        subprocess.run([sys.executable, "-m", "openmtcnn.cli.main", *shlex.split(step)], check=True)


def swapped_sets(weights: str, out: Path) -> dict[str, str]:
    """The weight set, and copies of it with each stage in turn taken from the published nets."""
    from openmtcnn.weights import STAGES, mix_weight_sets

    sets = {"trained": weights}
    for stage in STAGES:
        picks = {s: "published" if s == stage else weights for s in STAGES}
        sets[f"published {stage}"] = str(mix_weight_sets(picks, out / f"published_{stage}", note="swap"))
    return sets


def cmd_evaluate(args: argparse.Namespace) -> None:
    from openmtcnn import MTCNN
    from openmtcnn.evaluate.widerface import run_widerface

    out, val = Path(args.out), Path(args.val)
    results = {"pictures": args.pictures, "weights": args.weights, "ap": {}}
    for name, folder in swapped_sets(args.weights, out).items():
        r = run_widerface(MTCNN(weights=str(folder)), val / "WIDER_val" / "images", val / "eval_tools" / "ground_truth")
        results["ap"][name] = {s: round(r[s]["ap"], 4) for s in ("easy", "medium", "hard")}
        print(name, results["ap"][name], flush=True)
    (out / "curve.json").write_text(json.dumps(results, indent=1) + "\n")


def fit(pictures: np.ndarray, ap: np.ndarray) -> tuple[float, float]:
    """Least-squares a, b of AP = a + b log10(pictures)."""
    b, a = np.polyfit(np.log10(pictures), ap, 1)
    return float(a), float(b)


def cmd_plot(args: argparse.Namespace) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    points = sorted((json.loads(Path(p).read_text()) for p in args.runs), key=lambda r: r["pictures"])
    n = np.array([p["pictures"] for p in points], float)
    fig, ax = plt.subplots(figsize=(6.5, 4.5), dpi=120)
    table = {}
    for setting, colour in zip(PUBLISHED_AP, ("tab:blue", "tab:orange", "tab:green")):
        ap = np.array([p["ap"]["trained"][setting] for p in points])
        ax.plot(n, ap, "o-", color=colour, label=f"trained, {setting}")
        ax.axhline(PUBLISHED_AP[setting], color=colour, ls=":", label=f"published, {setting}")
        if len(n) >= 2:
            a, b = fit(n, ap)
            xs = np.geomspace(n.min(), FULL_WIDER_TRAIN, 50)
            ax.plot(xs, a + b * np.log10(xs), "--", color=colour, alpha=0.5)
            table[setting] = {"per_tenfold": round(b, 4), "at_12880": round(a + b * np.log10(FULL_WIDER_TRAIN), 4)}
    ax.set_xscale("log")
    ax.set_xlabel("WIDER train pictures")
    ax.set_ylabel("WIDER val subset AP (defaults)")
    ax.set_title("Training from scratch: AP against pictures")
    ax.legend(fontsize=7, ncol=2)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(args.out)
    plt.close(fig)
    print(json.dumps({"points": points, "fit": table}, indent=1))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True)
    s = sub.add_parser("subset")
    s.add_argument("--wider", required=True, help="the full WIDER root (e.g. the assembled 3,556 pictures)")
    s.add_argument("--base", required=True, help="WIDER root whose pictures come first (the 958-picture subset)")
    s.add_argument("--count", type=int, required=True)
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--out", required=True)
    s.set_defaults(func=cmd_subset)
    s = sub.add_parser("train")
    s.add_argument("--wider", required=True)
    s.add_argument("--landmarks", default=LANDMARKS)
    s.add_argument("--out", required=True)
    s.set_defaults(func=cmd_train)
    s = sub.add_parser("evaluate")
    s.add_argument("--weights", required=True, help="the trained weight set (name or folder)")
    s.add_argument("--out", required=True, help="folder for the swapped sets and curve.json")
    s.add_argument("--pictures", type=int, required=True)
    s.add_argument("--val", required=True, help="WIDER root with WIDER_val/images and eval_tools/ground_truth")
    s.set_defaults(func=cmd_evaluate)
    s = sub.add_parser("plot")
    s.add_argument("--runs", nargs="+", required=True, help="curve.json files")
    s.add_argument("--out", required=True, help="PNG")
    s.set_defaults(func=cmd_plot)
    args = p.parse_args()
    args.func(args)


if __name__ == "__main__":
    main()
