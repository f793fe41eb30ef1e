"""``run_batch``: every input image's faces as sharded Parquet, only the shards a previous run did not finish."""
from __future__ import annotations

import os
import time
from dataclasses import replace
from pathlib import Path
from typing import Callable, Sequence

from openmtcnn.batch.config import BatchConfig
from openmtcnn.batch.inputs import list_inputs
from openmtcnn.batch.shards import check_out, claim, is_done, job_record, plan


def engine_for(cfg: BatchConfig) -> Callable:
    """The engine's ``run(chunks, cfg)``; a missing optional package is an ImportError saying what to install."""
    try:
        import pyarrow  # noqa: F401
    except ImportError:
        raise ImportError("openmtcnn batch writes Parquet with pyarrow: pip install 'openmtcnn[batch]'") from None
    if cfg.engine == "ray":
        try:
            import ray.data  # noqa: F401
        except ImportError:
            raise ImportError("--engine ray needs Ray Data: pip install 'openmtcnn[scale]'") from None
        from openmtcnn.batch.on_ray import run_ray

        return run_ray
    from openmtcnn.batch.local import run_local

    return run_local


def metadata(cfg: BatchConfig, shards: int) -> dict:
    """What every shard's Parquet metadata (key ``openmtcnn``, JSON) records beside its own number."""
    from openmtcnn import __version__
    from openmtcnn.batch.rows import COLUMNS

    return {"version": __version__, "detector": cfg.detector(), "device": cfg.device, "shards": shards,
            "shard_size": cfg.shard_size, "batch_size": cfg.batch_size, "columns": COLUMNS}


def run_batch(inputs: Sequence[str | os.PathLike], out: str | os.PathLike, cfg: BatchConfig | None = None) -> dict:
    """Detect faces in every image the inputs name (folders, files, manifests) into ``out/part-NNNNN.parquet``.

    Problems with the inputs, ``out`` or the settings raise (BatchError, ImportError) before any detection;
    a bad image is a row with its error. A rerun does only the shards not yet written. Returns the summary:
    images done now, their faces and errors, images already done before, seconds, and where the output is.
    """
    from openmtcnn.progress import counter

    cfg = cfg or BatchConfig()
    began = time.perf_counter()
    paths = list_inputs(inputs)
    out = Path(out)
    check_out(out)
    engine = engine_for(cfg)
    claim(out, job_record(paths, cfg))
    shards = plan(paths, cfg.shard_size)
    todo = [s for s in shards if not is_done(out, s)]
    summary = {"images": sum(len(s.paths) for s in todo), "faces": 0, "errors": 0, "already_done": 0,
               "total": len(paths), "shards": len(shards), "shards_written": 0, "engine": cfg.engine,
               "seconds": 0.0, "first_result_seconds": None, "out": str(out)}
    summary["already_done"] = len(paths) - summary["images"]
    if todo:
        from openmtcnn.batch.writer import ShardWriter

        if cfg.address is None:  # bad settings, weights or device: one clear error here, not a broken worker pool
            replace(cfg, threads=None).make_detector()  # (threads=None: this process's OpenCV threads left alone)
        writer = ShardWriter(out, todo, cfg.shard_size, metadata(cfg, len(shards)))
        chunks = [chunk for s in todo for chunk in s.chunks(cfg.batch_size)]
        bar = counter(len(paths), desc="batch", initial=summary["already_done"], enable=cfg.progress, unit="img")
        try:
            for table in engine(chunks, cfg):
                if summary["first_result_seconds"] is None:
                    summary["first_result_seconds"] = round(time.perf_counter() - began, 3)
                bar.update(writer.add(table))
        finally:
            bar.close()
        if writer.unfinished():
            raise RuntimeError(f"the {cfg.engine} engine stopped before shards {writer.unfinished()} got all their "
                               "rows; run the same command again to finish them")
        summary.update(faces=writer.faces, errors=writer.errors, shards_written=len(writer.written))
    summary["seconds"] = round(time.perf_counter() - began, 3)
    return summary
