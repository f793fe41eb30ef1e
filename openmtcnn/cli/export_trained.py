"""``openmtcnn export trained``: a training run's checkpoints as a weight set."""
from __future__ import annotations

import argparse
from pathlib import Path

from openmtcnn.cli.errors import UsageError
from openmtcnn.weights import STAGES


def cmd_export_trained(args: argparse.Namespace) -> int:
    """Gather the run's best checkpoints (and --use ones) into a weight set."""
    from openmtcnn.weights.trained import export_trained

    run = Path(args.run)
    checkpoints = {s: run / s / "best.pt" for s in STAGES if (run / s / "best.pt").is_file()}
    for use in args.use or []:
        stage, _, path = use.partition("=")
        if stage not in STAGES or not Path(path).is_file():
            raise UsageError(f"--use takes STAGE=CHECKPOINT with a stage of {list(STAGES)} and an existing file, "
                             f"got {use!r}")
        checkpoints[stage] = Path(path)
    if not checkpoints:
        raise UsageError(f"no pnet/, rnet/ or onet/ best.pt under {run}")
    uses = "".join(f" --use {u}" for u in args.use or [])
    command = f"openmtcnn export trained {args.run}{uses} --out {args.out} --base {args.base}"
    folder = export_trained(checkpoints, args.out, base=args.base, note=f"{args.note} (made by: {command})".strip())
    print(f"wrote {folder} from {', '.join(sorted(checkpoints))}")
    return 0


def register(groups) -> None:
    """Add ``export trained``."""
    p = groups.export.add_parser("trained", help="trained checkpoints as a weight set")
    p.add_argument("run", help="training folder holding pnet/, rnet/, onet/ with best.pt (as train all writes)")
    p.add_argument("--out", required=True, help="weight set folder (under openmtcnn/weights/ to ship it)")
    p.add_argument("--base", default="published", help="weight set for stages without a checkpoint")
    p.add_argument("--use", nargs="+", metavar="STAGE=CHECKPOINT",
                   help="take these stages from other checkpoints, e.g. onet=RUN/onet_lmkhead/best.pt")
    p.add_argument("--note", default="", help="free text kept in the manifest")
    p.set_defaults(func=cmd_export_trained)
