"""Training speed and what is learnt, fp32 against bfloat16 autocast (``--precision bf16``), on real samples.

    python benchmarks/train_precision.py onet --data runs/lc/1846/samples/48 runs/lc/1846/random/48 \
        --steps 100 --epochs 2 --out runs/precision

Each precision trains the same net from the same seed on the same batches (``--epochs`` x ``--steps``
batches of 384, 2 threads); the table gives samples/s of the epochs after the first (no warm-up)
and the validation metrics at the end. Time it on a quiet machine: bfloat16 pays on CPUs with AMX
or AVX-512 BF16, and may be slower on others.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from openmtcnn.data import SampleSet
from openmtcnn.train.trainer import PRECISIONS, TrainConfig, train


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("stage", choices=["pnet", "rnet", "onet"])
    p.add_argument("--data", nargs="+", required=True, help="sample set folders of the stage's size")
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--steps", type=int, default=100)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", default="runs/precision")
    args = p.parse_args()
    samples, rows = SampleSet(*[Path(d) for d in args.data]), {}
    for precision in PRECISIONS:
        cfg = TrainConfig(stage=args.stage, epochs=args.epochs, steps_per_epoch=args.steps, threads=args.threads,
                          precision=precision)
        history = train(samples, Path(args.out) / f"{args.stage}_{precision}", cfg, resume=False)["history"]
        timed = history[1:] or history
        rows[precision] = {"samples_per_s": round(cfg.batch_size * args.steps * len(timed) / sum(h["seconds"] for h in timed)),
                           **{k: round(v, 4) for k, v in history[-1].items() if k.startswith("val_")}}
        print(json.dumps({precision: rows[precision]}), flush=True)
    print("| precision | samples/s | val loss | val cls accuracy | val recall |\n|---|---|---|---|---|")
    for precision, r in rows.items():
        print(f"| {precision} | {r['samples_per_s']:,} | {r['val_loss']:.4f} | {r['val_cls_accuracy']:.4f} | "
              f"{r['val_recall']:.4f} |")


if __name__ == "__main__":
    main()
