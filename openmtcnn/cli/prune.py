"""``openmtcnn compress prune``: iterative channel pruning with fine-tuning, one table row per step."""
from __future__ import annotations

import argparse
from pathlib import Path

from openmtcnn.cli.errors import UsageError


def cmd_prune(args: argparse.Namespace) -> int:
    from openmtcnn.compress.prune import PruneConfig, markdown, prune_iteratively
    from openmtcnn.data import SampleSet

    if not (Path(args.data) / "manifest.json").is_file():
        raise UsageError(f"--data must be a sample set folder (with manifest.json): {args.data}")
    if (args.wider_images is None) != (args.wider_gt is None):
        raise UsageError("--wider-images and --wider-gt go together")
    for flag in ("wider_images", "wider_gt"):
        if getattr(args, flag) and not Path(getattr(args, flag)).is_dir():
            raise UsageError(f"--{flag.replace('_', '-')} folder not found: {getattr(args, flag)}")
    if not 0 <= args.ratio < 1:
        raise UsageError(f"--ratio must be in [0, 1), got {args.ratio}")
    if args.steps < 0 or args.epochs < 1:
        raise UsageError("--steps must be >= 0 and --epochs >= 1")
    try:
        cfg = PruneConfig(stage=args.stage, source=args.weights, steps=args.steps, ratio=args.ratio,
                          criterion=args.criterion, epochs=args.epochs, steps_per_epoch=args.steps_per_epoch,
                          finetune_only=args.finetune_only, from_scratch=args.from_scratch,
                          scratch_epochs=args.scratch_epochs, wider_images=args.wider_images,
                          wider_gt=args.wider_gt, base=args.base, batch_size=args.batch_size, lr=args.lr,
                          seed=args.seed, threads=args.threads, device=args.device)
    except ValueError as e:
        raise UsageError(str(e)) from None
    table = prune_iteratively(cfg, SampleSet(args.data), args.out)
    print(markdown(table))
    print(f"table: {Path(args.out) / 'table.json'}, {Path(args.out) / 'table.md'}, {Path(args.out) / 'table.png'}")
    return 0


def register(groups) -> None:
    """Add ``compress prune``."""
    p = groups.compress.add_parser("prune", help="prune channels step by step with fine-tuning; "
                                   "params/MACs/AP per step")
    p.add_argument("stage", choices=["pnet", "rnet", "onet"])
    p.add_argument("--weights", default="published", help="weight set (name or folder) or checkpoint .pt to prune")
    p.add_argument("--data", required=True, help="the stage's sample set folder (with manifest.json)")
    p.add_argument("--out", required=True, help="folder for the steps' checkpoints and the table (resumable)")
    p.add_argument("--steps", type=int, default=3, help="prune-and-fine-tune rounds (default 3)")
    p.add_argument("--ratio", type=float, default=0.25, help="share of each layer's channels removed per step")
    p.add_argument("--criterion", choices=("l1", "l1-next"), default="l1",
                   help="channel score: filter L1 norm, or times the L1 of the weights reading it (default l1)")
    p.add_argument("--epochs", type=int, default=1, help="fine-tuning epochs per step (default 1)")
    p.add_argument("--steps-per-epoch", type=int, help="batches per epoch (default: one pass over the positives)")
    p.add_argument("--batch-size", type=int, default=384)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--wider-images", help="WIDER_val/images: also measure the cascade's AP at each step")
    p.add_argument("--wider-gt", help="eval_tools/ground_truth folder (with --wider-images)")
    p.add_argument("--base", help="weight set for the other stages in the AP cascade (default: --weights when "
                   "it is a weight set, else published)")
    p.add_argument("--from-scratch", action="store_true",
                   help="also train the final widths from random weights (pruning as architecture search)")
    p.add_argument("--scratch-epochs", type=int,
                   help="epochs for --from-scratch (default: steps x epochs, all the fine-tuning together)")
    p.add_argument("--finetune-only", action="store_true",
                   help="also a control row: the unpruned net fine-tuned as long as one step")
    p.add_argument("--threads", type=int, default=None, help="CPU threads (default: torch's)")
    p.add_argument("--device", default="auto", help="cpu, cuda or auto (default)")
    p.set_defaults(func=cmd_prune)
