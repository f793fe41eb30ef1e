"""``openmtcnn serve``: face detection over HTTP (``openmtcnn.serve``; needs the ``serve`` extra)."""
from __future__ import annotations

import argparse

from openmtcnn.cli.errors import UsageError
from openmtcnn.cli.options import add_detector_args
from openmtcnn.serve.config import ServeConfig


def config_from_args(args: argparse.Namespace) -> ServeConfig:
    """The ServeConfig the options describe; a setting that cannot work is a usage error."""
    try:
        return ServeConfig(host=args.host, port=args.port, workers=args.workers, batching=not args.no_batching,
                           batch_wait_ms=args.batch_wait_ms, max_batch=args.max_batch, queue=args.queue,
                           retry_after=args.retry_after, max_bytes=args.max_bytes,
                           max_pixels=args.max_pixels or None, batch_pixels=args.batch_pixels or None,
                           release_memory=not args.no_release_memory, detectors=args.detectors, access_log=args.access_log,
                           min_face=args.min_face, scale_factor=args.scale_factor, thresholds=tuple(args.thresholds),
                           weights=args.weights, device=args.device, threads=args.threads)
    except ValueError as e:
        raise UsageError(str(e)) from None


def cmd_serve(args: argparse.Namespace) -> int:
    """Serve until interrupted (Ctrl-C stops it gracefully)."""
    from openmtcnn.serve.app import serve

    serve(config_from_args(args))
    return 0


def register(groups) -> None:
    """Add ``serve``."""
    d = ServeConfig()
    p = groups.top.add_parser("serve", help="face detection over HTTP: POST /detect (needs openmtcnn[serve])")
    p.add_argument("--host", default=d.host, help=f"address to listen on (default {d.host})")
    p.add_argument("--port", type=int, default=d.port, help=f"port (default {d.port})")
    p.add_argument("--workers", type=int, default=d.workers,
                   help="worker processes, one detector each (default 1); --threads is per worker, "
                        "by default the cores shared out among them")
    p.add_argument("--batch-wait-ms", type=float, default=d.batch_wait_ms,
                   help=f"how long a request waits for others to share its detect call (default {d.batch_wait_ms})")
    p.add_argument("--max-batch", type=int, default=d.max_batch,
                   help=f"requests in one detect call at most (default {d.max_batch})")
    p.add_argument("--queue", type=int, default=d.queue,
                   help=f"requests waiting for the detector at most; more get 503 with Retry-After (default {d.queue})")
    p.add_argument("--no-batching", action="store_true", help="one detect call per request (for comparison)")
    p.add_argument("--retry-after", type=int, default=d.retry_after,
                   help=f"seconds a 503 tells the client to wait (default {d.retry_after})")
    p.add_argument("--max-bytes", type=int, default=d.max_bytes,
                   help=f"request body limit in bytes; more gets 413 (default {d.max_bytes})")
    p.add_argument("--max-pixels", type=int, default=d.max_pixels,
                   help=f"image limit in pixels, also for the first pyramid level; more gets 413 "
                        f"(default {d.max_pixels}; 0: no limit)")
    p.add_argument("--batch-pixels", type=int, default=d.batch_pixels,
                   help=f"pixels in one batched detect call at most, which bounds its memory "
                        f"(default {d.batch_pixels}; 0: no limit)")
    p.add_argument("--no-release-memory", action="store_true",
                   help="keep freed memory in the process after each detect call (default: handed back)")
    p.add_argument("--detectors", type=int, default=d.detectors,
                   help=f"detectors kept for distinct per-request settings (default {d.detectors})")
    p.add_argument("--access-log", action="store_true", help="log every request")
    add_detector_args(p)
    p.set_defaults(func=cmd_serve)
