"""The Ray engine: the same chunks through Ray Data ``map_batches`` over an actor pool, each actor one detector.

A local Ray is started (and shut down) in this process unless Ray is already running here or ``address``
names a cluster; there every node needs openmtcnn installed.
"""
from __future__ import annotations

import inspect
import logging
import os
from contextlib import contextmanager
from typing import Iterator, Sequence

import pyarrow as pa

from openmtcnn.batch.config import BatchConfig
from openmtcnn.batch.rows import detect_chunk


class ChunkDetector:
    """A Ray Data actor: one detector, and each batch's chunks (rows ``start``, ``paths``) turned into image rows."""

    def __init__(self, cfg: BatchConfig):
        self.detector = cfg.make_detector()

    def __call__(self, batch: pa.Table) -> pa.Table:
        starts, paths = batch.column("start").to_pylist(), batch.column("paths").to_pylist()
        return pa.concat_tables([detect_chunk(self.detector, s, p) for s, p in zip(starts, paths)])


def one_block_each(items: list[dict]):
    """A dataset with one chunk per block, so each chunk's rows come back as soon as it is done."""
    import ray.data

    params = inspect.signature(ray.data.from_items).parameters  # the keyword was renamed in Ray 2.10
    key = "override_num_blocks" if "override_num_blocks" in params else "parallelism"
    return ray.data.from_items(items, **{key: len(items)})


@contextmanager
def ray_session(cfg: BatchConfig):
    """Ray for the job, quiet: started here (local, or connected to ``address``) and shut down after."""
    import ray
    import ray.data

    started = not ray.is_initialized()
    if started:
        local = cfg.address is None
        ray.init(address=cfg.address, num_cpus=(cfg.workers or os.cpu_count() or 1) if local else None,
                 include_dashboard=False if local else None, logging_level=logging.ERROR, log_to_driver=False)
    ctx, log = ray.data.DataContext.get_current(), logging.getLogger("ray.data")
    quiet = [k for k in ("enable_progress_bars", "print_on_execution_start") if hasattr(ctx, k)]  # by Ray version
    saved, level = {k: getattr(ctx, k) for k in quiet}, log.level
    for k in quiet:
        setattr(ctx, k, False)
    log.setLevel(logging.ERROR)
    try:
        yield
    finally:
        for k, v in saved.items():
            setattr(ctx, k, v)
        log.setLevel(level)
        if started:
            ray.shutdown()


def run_ray(chunks: Sequence[tuple[int, list[str]]], cfg: BatchConfig) -> Iterator[pa.Table]:
    """Each chunk's rows as an actor finishes it (in any order); ``workers`` actors (default: the cluster's CPUs)."""
    import ray
    import ray.data

    with ray_session(cfg):
        resources = ray.cluster_resources()
        workers = min(cfg.workers or max(1, int(resources.get("CPU", 1))), max(1, len(chunks)))
        # Ray hides GPUs from actors that ask for none: with device cuda or auto, the actors share the GPUs
        gpus = min(1.0, resources.get("GPU", 0) / workers) if cfg.device != "cpu" else 0
        items = [{"start": start, "paths": paths} for start, paths in chunks]
        ds = one_block_each(items).map_batches(
            ChunkDetector, fn_constructor_kwargs={"cfg": cfg}, batch_size=1, batch_format="pyarrow",
            compute=ray.data.ActorPoolStrategy(size=workers), num_cpus=1, num_gpus=gpus)
        yield from ds.iter_batches(batch_format="pyarrow", batch_size=None)
