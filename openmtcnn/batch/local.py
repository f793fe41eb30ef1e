"""The local engine: worker processes on this machine, each holding one detector, fed chunks of paths."""
from __future__ import annotations

import multiprocessing
import os
import signal
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from typing import Iterator, Sequence

import pyarrow as pa

from openmtcnn.batch.config import BatchConfig
from openmtcnn.batch.rows import detect_chunk

_detector = None  # the worker process's own detector


def start_worker(cfg: BatchConfig) -> None:
    """Build the worker's detector; Ctrl-C is left to the parent, which stops the pool (no traceback per worker)."""
    global _detector
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _detector = cfg.make_detector()


def work(chunk: tuple[int, list[str]]) -> pa.Table:
    return detect_chunk(_detector, *chunk)


def run_local(chunks: Sequence[tuple[int, list[str]]], cfg: BatchConfig) -> Iterator[pa.Table]:
    """Each chunk's rows as a worker finishes it. A few chunks per worker are in flight, handed out in input
    order, so shards complete one after another (what a killed run keeps) and memory stays small.

    Workers are spawned, not forked: a fork would copy the parent's threads' locks (Arrow's, ONNX Runtime's).
    """
    workers = min(cfg.workers or os.cpu_count() or 1, max(1, len(chunks)))
    pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"),
                               initializer=start_worker, initargs=(cfg,))
    todo, pending = iter(chunks), set()

    def top_up(pending: set[Future]) -> set[Future]:
        while len(pending) < 2 * workers and (chunk := next(todo, None)) is not None:
            pending.add(pool.submit(work, chunk))
        return pending

    try:
        pending = top_up(pending)
        while pending:
            done, pending = wait(pending, return_when=FIRST_COMPLETED)
            pending = top_up(pending)
            for future in done:
                yield future.result()
    finally:
        pool.shutdown(wait=not pending, cancel_futures=True)
