"""Dynamic batching: requests that arrive within a few milliseconds share one call, behind a bounded queue.

One asyncio task collects waiting items into batches and hands each batch to ``process`` on a
single worker thread, so the event loop stays free to accept and answer requests meanwhile.
"""
from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, NamedTuple, Optional, Sequence


class QueueFull(Exception):
    """The queue holds its limit of waiting items: the caller should answer 503 and have the client retry."""


class Job(NamedTuple):
    """One submitted item and the future its result goes to."""

    item: Any
    future: asyncio.Future


class Batcher:
    """Runs ``process(items) -> results`` on batches of up to ``max_batch`` submitted items, one batch at a time.

    ``process`` returns one result per item, or an exception instance in the place of an item that
    failed; ``submit`` returns that result or raises that exception. A batch starts with the first
    waiting item and takes whatever else arrives within ``wait_s`` seconds. At most ``queue`` items
    wait (those of the batch being collected or processed not counted); ``submit`` refuses more
    with ``QueueFull`` at once, so memory stays bounded under any load.
    """

    def __init__(self, process: Callable[[list], Sequence[Any]], max_batch: int, wait_s: float, queue: int):
        if max_batch < 1 or queue < 1 or wait_s < 0:
            raise ValueError(f"need max_batch >= 1, queue >= 1, wait_s >= 0; got {max_batch}, {queue}, {wait_s}")
        self.process, self.max_batch, self.wait_s = process, max_batch, wait_s
        self.queue: asyncio.Queue[Job] = asyncio.Queue(queue)
        self.executor = ThreadPoolExecutor(1, thread_name_prefix="openmtcnn-batch")
        self.task: Optional[asyncio.Task] = None
        self.batches = self.items = 0  # processed so far (for /health)

    def start(self) -> None:
        """Start collecting batches; call from the running event loop."""
        self.task = asyncio.get_running_loop().create_task(self.run())

    @property
    def waiting(self) -> int:
        return self.queue.qsize()

    async def submit(self, item: Any) -> Any:
        """The result of ``item`` once its batch is processed; ``QueueFull`` at once when the queue is full."""
        future = asyncio.get_running_loop().create_future()
        try:
            self.queue.put_nowait(Job(item, future))
        except asyncio.QueueFull:
            raise QueueFull(f"the queue is full ({self.queue.maxsize} waiting)") from None
        return await future

    async def next_batch(self) -> list[Job]:
        """The first waiting job, then whatever else arrives within ``wait_s``, up to ``max_batch``."""
        batch = [await self.queue.get()]
        if self.wait_s > 0 and self.queue.qsize() < self.max_batch - 1:
            await asyncio.sleep(self.wait_s)
        while len(batch) < self.max_batch and not self.queue.empty():
            batch.append(self.queue.get_nowait())
        return [job for job in batch if not job.future.done()]  # a cancelled request needs no work

    async def run(self) -> None:
        """Collect and process batches until cancelled."""
        loop = asyncio.get_running_loop()
        while True:
            batch = await self.next_batch()
            if not batch:
                continue
            self.batches, self.items = self.batches + 1, self.items + len(batch)
            try:
                results = await loop.run_in_executor(self.executor, self.process, [job.item for job in batch])
            except Exception as e:  # a failure of the whole batch: each of its requests gets it, the server goes on
                results = [e] * len(batch)
            for job, result in zip(batch, results):
                if job.future.done():
                    continue
                if isinstance(result, BaseException):
                    job.future.set_exception(result)
                else:
                    job.future.set_result(result)

    async def close(self) -> None:
        """Stop collecting, fail the jobs still waiting, and let the worker thread go."""
        if self.task is not None:
            self.task.cancel()
            try:
                await self.task
            except asyncio.CancelledError:
                pass
        while not self.queue.empty():
            job = self.queue.get_nowait()
            if not job.future.done():
                job.future.set_exception(QueueFull("the server is shutting down"))
        self.executor.shutdown(wait=False)
