"""Sharded Parquet output: a fixed plan of shards, the job file that guards it, and shards found done or written."""
from __future__ import annotations

import hashlib
import tempfile
from dataclasses import dataclass
from pathlib import Path

from openmtcnn.batch.config import BatchConfig, BatchError

JOB_FILE = "_job.json"  # Parquet readers skip names starting with _ or ., so DIR reads as one data set


def part_name(number: int) -> str:
    """Shard ``number``'s file name: sorted by name is sorted by input order."""
    return f"part-{number:05d}.parquet"


@dataclass
class Shard:
    """Images ``start`` ... ``start + len(paths) - 1`` of the sorted input list: one Parquet file."""

    number: int
    start: int
    paths: list[str]

    @property
    def name(self) -> str:
        return part_name(self.number)

    def chunks(self, batch_size: int) -> list[tuple[int, list[str]]]:
        """(first input index, paths) per detect call; a chunk never spans two shards."""
        return [(self.start + k, self.paths[k:k + batch_size]) for k in range(0, len(self.paths), batch_size)]


def plan(paths: list[str], shard_size: int) -> list[Shard]:
    """The shards of a sorted input list: by index, so the same list always gives the same shards."""
    return [Shard(k // shard_size, k, paths[k:k + shard_size]) for k in range(0, len(paths), shard_size)]


def check_out(out: Path) -> None:
    """Make the output folder, or raise BatchError saying why it cannot be written."""
    if out.exists() and not out.is_dir():
        raise BatchError(f"--out {out} is an existing file; give a folder for the Parquet shards")
    try:
        out.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=out):
            pass
    except OSError as e:
        raise BatchError(f"--out {out} cannot be written: {e.strerror or e}") from None


def job_record(paths: list[str], cfg: BatchConfig) -> dict:
    """What makes two runs the same job: the inputs and every setting that changes the rows or the shards."""
    digest = hashlib.sha256("\n".join(paths).encode()).hexdigest()
    return {"images": len(paths), "inputs_sha256": digest, "shard_size": cfg.shard_size,
            "batch_size": cfg.batch_size, "detector": cfg.detector()}


def claim(out: Path, record: dict) -> None:
    """Write the job file, or check that the one there is this job's: a rerun resumes, another job is refused."""
    from openmtcnn.fileio import read_json, write_json

    job = out / JOB_FILE
    if job.exists():
        try:
            found = read_json(job)
        except (OSError, ValueError) as e:
            raise BatchError(f"{job} cannot be read ({e}); give another --out folder or delete it") from None
        differ = sorted(k for k in record if found.get(k) != record[k])
        if differ:
            raise BatchError(f"--out {out} holds another job's output (different {', '.join(differ)}); give "
                             "another --out folder, or delete this one to start again")
    elif any(out.glob("part-*.parquet")):
        raise BatchError(f"--out {out} holds Parquet parts but no {JOB_FILE}: not this command's output; give "
                         "another --out folder")
    else:
        write_json(job, record)
    for stale in out.glob(".part-*.parquet.*"):  # temporary files of writes a killed run left unfinished
        stale.unlink(missing_ok=True)


def is_done(out: Path, shard: Shard) -> bool:
    """Whether the shard's file is there, readable and holds its images' rows, in order (else it is redone)."""
    import pyarrow.parquet as pq

    path = out / shard.name
    try:
        return path.is_file() and pq.read_table(path, columns=["path"]).column("path").to_pylist() == shard.paths
    except Exception:  # noqa: BLE001 -- missing, truncated, not Parquet: all mean "do it again"
        return False
