"""The server's settings in one dataclass, and the detector settings a request may choose."""
from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from typing import NamedTuple, Optional


class Settings(NamedTuple):
    """Detector settings a request may set (a dict key: requests with the same settings share a batch)."""

    min_face: float
    thresholds: tuple[float, float, float]


@dataclass
class ServeConfig:
    """Everything ``openmtcnn serve`` can be told; each worker process builds its app from one of these."""

    host: str = "127.0.0.1"
    port: int = 8080
    workers: int = 1  # uvicorn worker processes, one detector (cache) each
    batching: bool = True  # False: every request is its own detect call (for comparison)
    batch_wait_ms: float = 5.0  # how long the first request of a batch waits for others
    max_batch: int = 16  # requests in one detect call at most
    queue: int = 64  # requests waiting for the detector at most; more get 503
    retry_after: int = 1  # seconds a 503 asks the client to wait (its Retry-After header)
    max_bytes: int = 20 * 2**20  # request body limit; more gets 413
    max_pixels: Optional[int] = 2**24  # image (and first pyramid level) limit; more gets 413. None: no limit
    # decoded pixels in one detect call at most: a batch whose images hold more runs as several calls, in turn,
    # so a batch's transient memory is no more than one image of that many pixels needs. None: no limit
    batch_pixels: Optional[int] = 2**24
    # hand the C allocator's free memory back to the system after every detect call (glibc's malloc_trim;
    # a no-op elsewhere): without it the free memory of a batch's large arrays stays with the process
    # (and, when batching, ONNX Runtime's CPU arena off: it keeps the largest batch's memory for good)
    release_memory: bool = True
    detectors: int = 4  # detectors kept for distinct per-request settings (least recently used dropped)
    access_log: bool = False
    # the detector's settings; min_face and thresholds are the defaults of per-request query options
    min_face: float = 20
    scale_factor: float = 0.709
    thresholds: tuple[float, float, float] = (0.6, 0.7, 0.7)
    weights: str = "published"
    backend: str = "auto"
    device: str = "auto"
    threads: Optional[int] = None  # per worker; None: the cores shared out among the workers

    def __post_init__(self) -> None:
        self.thresholds = tuple(float(t) for t in self.thresholds)
        self.check()

    def check(self) -> None:
        """Raise ValueError naming the first setting that cannot work."""
        positive = {"port": self.port, "workers": self.workers, "max_batch": self.max_batch, "queue": self.queue,
                    "retry_after": self.retry_after, "max_bytes": self.max_bytes, "detectors": self.detectors}
        for name, value in positive.items():
            if not (isinstance(value, int) and value >= (0 if name == "port" else 1)):
                raise ValueError(f"{name} must be an integer >= {0 if name == 'port' else 1}, got {value!r}")
        if not (math.isfinite(self.batch_wait_ms) and 0 <= self.batch_wait_ms <= 1000):
            raise ValueError(f"batch_wait_ms must be in [0, 1000], got {self.batch_wait_ms!r}")
        for name in ("max_pixels", "batch_pixels"):
            value = getattr(self, name)
            if value is not None and not (isinstance(value, int) and not isinstance(value, bool) and value >= 1):
                raise ValueError(f"{name} must be an integer >= 1 or None (no limit), got {value!r}")
        if self.threads is not None and not (isinstance(self.threads, int) and self.threads >= 1):
            raise ValueError(f"threads must be an integer >= 1 or None, got {self.threads!r}")

    def settings(self) -> Settings:
        """The detector settings of a request that sets none."""
        return Settings(float(self.min_face), self.thresholds)

    def to_json(self) -> str:
        """The config as JSON: how it reaches worker processes, which start afresh (spawned, not forked)."""
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> "ServeConfig":
        return cls(**json.loads(text))
