"""How one stage's net scores the crops it is handed: positives and negatives kept at each threshold.

    python benchmarks/stage_scores.py rnet --weights published trained \\
        --sets runs/r3556/samples/24 --all runs/diag/valr/24 --out docs/trained_gap/rnet.json

A set the nets were trained on (``--sets``, sample sets of the stage's crop size made by
``openmtcnn data``) is read through the trainer's own validation split, its held-out samples; a
set mined from pictures no net learned from (``--all``; e.g. ``openmtcnn data rnet --weights
trained --wider DIR`` with DIR presenting the WIDER val pictures in the train layout) is read
whole. Per weight set and set: the share of positives and of negatives whose face probability
passes each threshold. A net that keeps fewer positives and fewer negatives at one threshold, but
as many positives as the other at its negatives' rate, is stricter, not worse.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from openmtcnn.data import SampleSet
from openmtcnn.runtime.torch import load_net
from openmtcnn.train.loss import NEG, POS
from openmtcnn.train.trainer import TrainConfig, split_indices, to_tensors

THRESHOLDS = (0.3, 0.5, 0.7, 0.9)


def face_probability(net: torch.nn.Module, samples: SampleSet, idx: np.ndarray, batch: int = 2048) -> np.ndarray:
    """The net's face probability of each sample, fed as the trainer feeds it (``to_tensors``)."""
    out = []
    for i in range(0, len(idx), batch):
        x = to_tensors(samples[idx[i:i + batch]], torch.device("cpu"))[0]
        with torch.no_grad():
            out.append(torch.softmax(net(x)[0].flatten(1), 1)[:, 1].numpy())
    return np.concatenate(out) if out else np.zeros(0)


def kept(probability: np.ndarray) -> dict[str, float]:
    return {str(t): round(float(np.mean(probability > t)), 4) for t in THRESHOLDS}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("stage", choices=["pnet", "rnet", "onet"])
    ap.add_argument("--weights", nargs="+", default=["published", "trained"])
    ap.add_argument("--sets", nargs="*", default=[], help="sets the nets learned from (read: their held-out split)")
    ap.add_argument("--all", nargs="*", default=[], help="sets to read whole (pictures no net learned from)")
    ap.add_argument("--per-kind", type=int, default=5000, help="at most this many samples of each kind")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", help="JSON file for the table")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    nets = {w: load_net(w, args.stage).net.eval() for w in args.weights}
    rows = []
    for folder in [*args.sets, *args.all]:
        samples = SampleSet(Path(folder))
        by_kind = samples.indices_by_kind()
        whole = folder in args.all
        if not whole:  # the trainer's held-out split, at its default fraction and seed
            by_kind = split_indices(by_kind, TrainConfig.val_fraction, TrainConfig.seed)[1]
        for w, net in nets.items():
            pos = face_probability(net, samples, by_kind[POS][:args.per_kind])
            neg = face_probability(net, samples, by_kind[NEG][:args.per_kind])
            rows.append({"set": folder, "read": "all" if whole else "held-out", "weights": w,
                         "positives": len(pos), "negatives": len(neg),
                         "positives_kept": kept(pos), "negatives_kept": kept(neg)})
            r = rows[-1]
            print(f"{folder} ({r['read']}) {w}: positives {len(pos)} kept {r['positives_kept']}; "
                  f"negatives {len(neg)} kept {r['negatives_kept']}", flush=True)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(rows, indent=1) + "\n")


if __name__ == "__main__":
    main()
