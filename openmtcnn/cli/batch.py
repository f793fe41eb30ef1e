"""``openmtcnn batch``: faces in whole photo collections as sharded Parquet, resumable, locally or on Ray."""
from __future__ import annotations

import argparse
import sys

from openmtcnn.cli.errors import UsageError
from openmtcnn.cli.options import add_detector_args, detector_settings


def batch_config(args: argparse.Namespace):
    """The BatchConfig the options describe (a bad value is a usage error naming its option)."""
    from openmtcnn.batch import BatchConfig, BatchError

    try:
        return BatchConfig(**detector_settings(args), device=args.device, threads=args.threads, engine=args.engine,
                           workers=args.workers, address=args.address, shard_size=args.shard_size,
                           batch_size=args.batch_size, progress=not args.quiet)
    except BatchError as e:
        message = str(e)
        for name in ("shard_size", "batch_size", "workers", "threads", "address"):
            message = message.replace(name, "--" + name.replace("_", "-"))
        raise UsageError(message.replace("engine='ray'", "--engine ray").replace(" (--engine ray)", "")) from None


def say(summary: dict) -> str:
    """The summary line: what this run did, and where its output is."""
    s = summary
    rate = s["images"] / s["seconds"] if s["seconds"] > 0 else 0.0
    before = f" ({s['already_done']} were done before)" if s["already_done"] else ""
    return (f"{s['images']} images in {s['seconds']:.1f} s ({rate:.1f} images/s){before}, {s['faces']} faces, "
            f"{s['errors']} errors; {s['total']} rows in {s['shards']} Parquet files in {s['out']}/")


def cmd_batch(args: argparse.Namespace) -> int:
    """Run the job; exit 0 even when some files could not be read (their rows say why), 130 when interrupted."""
    from openmtcnn.batch import BatchError, run_batch

    cfg = batch_config(args)
    try:
        summary = run_batch(args.inputs, args.out, cfg)
    except BatchError as e:
        raise UsageError(str(e)) from None
    except KeyboardInterrupt:
        print("openmtcnn: interrupted; the shards written are kept: run the same command again to do the rest",
              file=sys.stderr)
        return 130
    if not args.quiet or summary["errors"]:
        print(say(summary))
    return 0


def register(groups) -> None:
    """Add ``batch``."""
    p = groups.top.add_parser("batch", help="faces in many images as sharded Parquet (resumable; local or Ray)")
    p.add_argument("inputs", nargs="+", metavar="INPUT",
                   help="folders (searched recursively), image files, or manifests: .txt (one path a line) or "
                        ".csv / .parquet with a 'path' column; relative paths in a manifest are from its folder")
    p.add_argument("--out", required=True, help="folder for the part-NNNNN.parquet shards (one row per image)")
    p.add_argument("--engine", choices=["local", "ray"], default="local",
                   help="local: worker processes here (default); ray: Ray Data actors (pip install "
                        "'openmtcnn[scale]'), a local Ray unless --address names a cluster")
    p.add_argument("--workers", type=int, help="worker processes or Ray actors (default: the CPUs)")
    p.add_argument("--address", help="ray: an existing cluster to run on ('auto', or ray://HOST:10001)")
    p.add_argument("--shard-size", type=int, default=1000, help="images per Parquet file (default 1000)")
    p.add_argument("--batch-size", type=int, default=16, help="images per detect call (default 16)")
    p.add_argument("--threads", type=int, default=1, help="CPU threads for the nets in each worker (default 1)")
    p.add_argument("--quiet", action="store_true", help="no progress bar; the summary only when files failed")
    add_detector_args(p, threads=False)
    p.set_defaults(func=cmd_batch)
