"""Rows come back from the workers in any order; each shard is written, atomically, once all its rows are in."""
from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

import numpy as np
import pyarrow as pa

from openmtcnn.batch.rows import SCHEMA, counts
from openmtcnn.batch.shards import Shard, part_name


class ShardWriter:
    """Collects row tables per shard; a shard's file appears (by rename) only when it is complete, so a killed
    run leaves whole shards or none, and a row that comes twice (a retried task) is written once."""

    def __init__(self, out: Path, todo: list[Shard], shard_size: int, metadata: dict):
        self.out, self.shard_size, self.metadata = out, shard_size, metadata
        self.sizes = {s.number: len(s.paths) for s in todo}
        self.parts: dict[int, list[pa.Table]] = defaultdict(list)
        self.seen: dict[int, set[int]] = defaultdict(set)
        self.written: set[int] = set()
        self.faces = self.errors = 0  # in the rows written

    def add(self, table: pa.Table) -> int:
        """Take a worker's rows (any shards); write the shards they complete. How many new rows there were."""
        table = table.cast(SCHEMA)
        numbers = table.column("index").to_numpy() // self.shard_size
        shards, new = np.unique(numbers), 0
        for n in shards.tolist():
            if n in self.written or n not in self.sizes:
                continue
            part = table.filter(pa.array(numbers == n)) if len(shards) > 1 else table
            before = len(self.seen[n])
            self.seen[n].update(part.column("index").to_pylist())
            new += len(self.seen[n]) - before
            self.parts[n].append(part)
            if len(self.seen[n]) == self.sizes[n]:
                self.write(n)
        return new

    def write(self, n: int) -> None:
        """Shard ``n``'s rows in input order (one of each), without the index, with the job's metadata."""
        import pyarrow.parquet as pq

        from openmtcnn.fileio import atomic_write

        table = pa.concat_tables(self.parts.pop(n)).sort_by("index")
        index = table.column("index").to_numpy()
        if len(index) > self.sizes[n]:
            table = table.take(np.unique(index, return_index=True)[1])
        table = table.drop_columns(["index"])
        faces, errors = counts(table)
        self.faces, self.errors = self.faces + faces, self.errors + errors
        meta = json.dumps({**self.metadata, "shard": n})
        table = table.replace_schema_metadata({"openmtcnn": meta})
        atomic_write(self.out / part_name(n), lambda tmp: pq.write_table(table, tmp))
        del self.seen[n]
        self.written.add(n)

    def unfinished(self) -> list[int]:
        """Shards still waiting for rows (none when a run ends normally)."""
        return sorted(set(self.sizes) - self.written)
