"""What one batch job is told: the detector's settings, the engine, and how the output is sharded."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

ENGINES = ("local", "ray")


class BatchError(ValueError):
    """A job that cannot start (a missing input, an unwritable output, another job's output): found before any work."""


@dataclass
class BatchConfig:
    """Everything ``run_batch`` can be told. The detector fields match ``openmtcnn detect``'s options."""

    min_face: float = 20
    scale_factor: float = 0.709
    thresholds: tuple[float, float, float] = (0.6, 0.7, 0.7)
    weights: str = "published"
    device: str = "auto"
    threads: Optional[int] = 1  # per worker: the workers are the parallelism; None: all cores in each
    engine: str = "local"  # "local": worker processes here; "ray": a Ray Data actor pool
    workers: Optional[int] = None  # worker processes / Ray actors; None: this machine's (or the cluster's) CPUs
    address: Optional[str] = None  # ray: an existing cluster ("auto", "ray://host:10001"); None: start a local one
    shard_size: int = 1000  # images per Parquet file
    batch_size: int = 16  # images per detect call (one unit of work)
    progress: bool = True  # a progress bar on stderr (when it is a terminal)

    def __post_init__(self) -> None:
        self.thresholds = tuple(float(t) for t in self.thresholds)
        self.check()

    def check(self) -> None:
        """Raise BatchError naming the first setting that cannot work (the detector checks its own)."""
        if self.engine not in ENGINES:
            raise BatchError(f"engine must be one of {ENGINES}, got {self.engine!r}")
        for name in ("shard_size", "batch_size", "workers", "threads"):
            value = getattr(self, name)
            if value is None and name in ("workers", "threads"):
                continue
            if not (isinstance(value, int) and not isinstance(value, bool) and value >= 1):
                raise BatchError(f"{name} must be an integer >= 1, got {value!r}")
        if self.address is not None and self.engine != "ray":
            raise BatchError("address is for the ray engine: give engine='ray' (--engine ray) with it")

    def detector(self) -> dict:
        """The settings that decide the detections: recorded in the Parquet metadata, the same for every shard."""
        return {"min_face": self.min_face, "scale_factor": self.scale_factor, "thresholds": list(self.thresholds),
                "weights": self.weights}

    def make_detector(self):
        """The MTCNN a worker holds."""
        from openmtcnn import MTCNN

        return MTCNN(min_face_size=self.min_face, scale_factor=self.scale_factor, thresholds=self.thresholds,
                     weights=self.weights, threads=self.threads, device=self.device, batch_size=self.batch_size)
