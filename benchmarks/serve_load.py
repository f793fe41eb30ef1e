"""Load on ``openmtcnn serve`` over loopback: concurrent clients posting WIDER FACE val photos.

Starts the server as a subprocess, once with dynamic batching and once without (or loads a server
already running, ``--url``, which must be on 127.0.0.1). Each client thread keeps one connection and
posts photos until it has sent ``--requests`` or ``--seconds`` have passed. Reports p50/p99 latency,
requests/s, errors by status, and the server's resident memory (VmRSS of the server and its worker
processes, read from /proc) before and after the load, with its peak (VmHWM).

    .venv/bin/python benchmarks/serve_load.py --clients 16 --requests 50 --seconds 60 --out runs/serve_load.json
    .venv/bin/python benchmarks/serve_load.py --clients 4 --requests 3 --seconds 5 --images-max 8   # a smoke run
"""
from __future__ import annotations

import argparse
import http.client
import ipaddress
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np

REPO = Path(__file__).resolve().parents[1]
DEFAULT_IMAGES = REPO.parent / "shared" / "data" / "widerface" / "WIDER_val" / "images"


@dataclass
class Tally:
    """What the clients saw: latency of each answered request, and errors by status (or exception name)."""

    latencies: list[float] = field(default_factory=list)
    errors: dict[str, int] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, seconds: float, error: str | None) -> None:
        with self.lock:
            if error is None:
                self.latencies.append(seconds)
            else:
                self.errors[error] = self.errors.get(error, 0) + 1


def check_loopback(url: str) -> tuple[str, int]:
    """Host and port of ``url``; anything but a loopback address is refused (this is a load test)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    try:
        loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if parts.scheme != "http" or not loopback or parts.port is None:
        raise SystemExit(f"--url must be http://127.0.0.1:PORT (loopback only), got {url}")
    return host, parts.port


def memory(pid: int) -> dict[str, float] | None:
    """VmRSS and VmHWM in MiB, summed over ``pid`` and its child processes (the workers); None if unreadable."""
    def status(p: int) -> dict[str, float]:
        fields = dict(line.split(":", 1) for line in Path(f"/proc/{p}/status").read_text().splitlines() if ":" in line)
        return {k: int(fields[k].split()[0]) / 1024 for k in ("VmRSS", "VmHWM")}

    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        found = [status(p) for p in [pid, *map(int, children)]]
    except (OSError, ValueError, KeyError):
        return None
    return {"rss_mib": round(sum(f["VmRSS"] for f in found), 1), "peak_mib": round(sum(f["VmHWM"] for f in found), 1)}


def health(url: str) -> dict:
    with urllib.request.urlopen(f"{url}/health", timeout=5) as r:
        return json.loads(r.read())


def client(host: str, port: int, photos: list[bytes], first: int, count: int, deadline: float, tally: Tally) -> None:
    """Post photos (from ``first`` on, in turn) until ``count`` are sent or the deadline passes."""
    conn = http.client.HTTPConnection(host, port, timeout=30)
    for k in range(count):
        if time.monotonic() >= deadline:
            break
        body = photos[(first + k) % len(photos)]
        t = time.perf_counter()
        try:
            conn.request("POST", "/detect", body=body, headers={"Content-Type": "image/jpeg"})
            r = conn.getresponse()
            r.read()
            tally.add(time.perf_counter() - t, None if r.status == 200 else str(r.status))
        except (OSError, http.client.HTTPException) as e:
            tally.add(0.0, type(e).__name__)
            conn.close()
            conn = http.client.HTTPConnection(host, port, timeout=30)
    conn.close()


def load(url: str, photos: list[bytes], clients: int, requests: int, seconds: float) -> dict:
    """Run the clients against ``url``; their latencies, throughput and errors."""
    host, port = check_loopback(url)
    tally = Tally()
    deadline = time.monotonic() + seconds
    threads = [threading.Thread(target=client, args=(host, port, photos, i * requests, requests, deadline, tally))
               for i in range(clients)]
    t = time.perf_counter()
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    wall = time.perf_counter() - t
    ms = np.array(tally.latencies) * 1000
    return {"clients": clients, "ok": len(ms), "errors": tally.errors, "seconds": round(wall, 2),
            "requests_per_s": round(len(ms) / wall, 1),
            "p50_ms": round(float(np.percentile(ms, 50)), 1) if len(ms) else None,
            "p99_ms": round(float(np.percentile(ms, 99)), 1) if len(ms) else None}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(extra: list[str], timeout: float = 60) -> tuple[subprocess.Popen, str]:
    """``openmtcnn serve`` on a free loopback port, once /health answers."""
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "openmtcnn.cli.main", "serve", "--host", "127.0.0.1",
                             "--port", str(port), *extra], cwd=REPO, stdout=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            raise SystemExit(f"the server exited with status {proc.returncode}")
        try:
            health(url)
            return proc, url
        except OSError:
            if time.monotonic() > deadline:
                stop(proc)
                raise SystemExit(f"the server did not answer /health within {timeout:g} s")
            time.sleep(0.2)


def stop(proc: subprocess.Popen) -> None:
    """Ctrl-C the server (graceful), then kill it if it has not gone within 20 s."""
    proc.send_signal(signal.SIGINT)
    try:
        proc.wait(20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def measure(url: str, pid: int | None, photos: list[bytes], args: argparse.Namespace) -> dict:
    """Warm up (one request per client), then the load, with the server's memory before and after."""
    load(url, photos, args.clients, 1, args.seconds)
    before = memory(pid) if pid else None
    result = load(url, photos, args.clients, args.requests, args.seconds)
    return {**result, "memory_before": before, "memory_after": memory(pid) if pid else None}


def row(name: str, r: dict) -> str:
    mem = lambda m, k: f"{m[k]:.0f}" if m else "-"  # noqa: E731
    errors = ", ".join(f"{k}: {v}" for k, v in r["errors"].items()) or "0"
    return (f"| {name} | {r['clients']} | {r['ok']} | {errors} | {r['requests_per_s']} | {r['p50_ms']} | "
            f"{r['p99_ms']} | {mem(r['memory_before'], 'rss_mib')} | {mem(r['memory_after'], 'rss_mib')} | "
            f"{mem(r['memory_after'], 'peak_mib')} |")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--url", help="a running server, http://127.0.0.1:PORT (default: start one per mode)")
    p.add_argument("--images", type=Path, default=DEFAULT_IMAGES, help=f"photos to post (default {DEFAULT_IMAGES})")
    p.add_argument("--images-max", type=int, default=64, help="photos read from --images (default 64)")
    p.add_argument("--clients", type=int, default=8, help="concurrent clients (default 8)")
    p.add_argument("--requests", type=int, default=25, help="requests per client at most (default 25)")
    p.add_argument("--seconds", type=float, default=60, help="time limit of each load, in seconds (default 60)")
    p.add_argument("--modes", nargs="+", default=["batching", "no-batching"], choices=["batching", "no-batching"],
                   help="servers to start and load in turn (without --url)")
    p.add_argument("--server-args", default="--device cpu",
                   help="more options for `openmtcnn serve`, as one string (default '--device cpu')")
    p.add_argument("--out", type=Path, help="write the results as JSON here too")
    args = p.parse_args()
    if min(args.clients, args.requests, args.images_max) < 1 or not 0 < args.seconds <= 3600:
        raise SystemExit("--clients, --requests and --images-max must be >= 1, --seconds in (0, 3600]")

    files = sorted(args.images.rglob("*.jpg"))[:args.images_max]
    if not files:
        raise SystemExit(f"no .jpg photos under {args.images}")
    photos = [f.read_bytes() for f in files]
    print(f"{len(photos)} photos from {args.images}; {args.clients} clients x {args.requests} requests "
          f"at most, {args.seconds:g} s at most per load")
    results = {}
    if args.url:
        check_loopback(args.url)
        results["url"] = measure(args.url.rstrip("/"), health(args.url.rstrip("/")).get("pid"), photos, args)
    for mode in ([] if args.url else args.modes):
        extra = args.server_args.split() + (["--no-batching"] if mode == "no-batching" else [])
        proc, url = start_server(extra)
        try:
            results[mode] = measure(url, proc.pid, photos, args)
        finally:
            stop(proc)
    print("| server | clients | ok | errors | requests/s | p50 ms | p99 ms | RSS before MiB | RSS after MiB | "
          "peak MiB |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for name, r in results.items():
        print(row(name, r))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({"photos": len(photos), "requests": args.requests, "results": results},
                                       indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
