"""The HTTP service against real servers on loopback: the library's faces, 4xx for bad input, concurrency,
back-pressure, dynamic batching and worker processes."""
from __future__ import annotations

import json
import os
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
import zlib
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import cv2
import numpy as np
import pytest

pytest.importorskip("fastapi")
uvicorn = pytest.importorskip("uvicorn")
httpx = pytest.importorskip("httpx")

from openmtcnn import MTCNN  # noqa: E402
from openmtcnn.detect.cascade import to_dicts  # noqa: E402
from openmtcnn.serve import ServeConfig, Settings  # noqa: E402
from openmtcnn.serve.app import create_app, server_options  # noqa: E402

TIMEOUT = 30  # seconds: any one request, and a server's start


def png_header(width: int, height: int) -> bytes:
    """A PNG that declares width x height and holds no pixels: a few dozen bytes."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b""))


@contextmanager
def running(config: ServeConfig, make_detector=None) -> Iterator[httpx.Client]:
    """A real server on a free loopback port, in a thread: a client for it; the server always stops after."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    options = {**server_options(config), "log_level": "warning", "log_config": None}
    server = uvicorn.Server(uvicorn.Config(create_app(config, make_detector), **options))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + TIMEOUT
        while not server.started:
            assert thread.is_alive() and time.monotonic() < deadline, "the server did not start"
            time.sleep(0.02)
        with httpx.Client(base_url=f"http://127.0.0.1:{sock.getsockname()[1]}", timeout=TIMEOUT) as client:
            yield client
    finally:
        server.should_exit = True
        thread.join(TIMEOUT)
        sock.close()


def concurrently(n: int, fn) -> list:
    """``fn(i)`` for i in range(n), each on its own thread, started together; the results in order."""
    results: list = [None] * n
    start = threading.Barrier(n)

    def work(i: int) -> None:
        start.wait(TIMEOUT)
        try:
            results[i] = fn(i)
        except Exception as e:  # reported by the test's assertions
            results[i] = e

    threads = [threading.Thread(target=work, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(2 * TIMEOUT)
    return results


def as_json(faces: list[dict]) -> list[dict]:
    """The library's faces as they come back from JSON (tuples become lists)."""
    return json.loads(json.dumps(faces))


@pytest.fixture(scope="module")
def client() -> Iterator[httpx.Client]:
    with running(ServeConfig(device="cpu")) as c:
        yield c


@pytest.fixture(scope="module")
def small_png(astronaut_path) -> bytes:
    """The sample picture at 160x120, as PNG bytes: cheap to detect on."""
    small = cv2.resize(cv2.imread(str(astronaut_path)), (160, 120), interpolation=cv2.INTER_AREA)
    return cv2.imencode(".png", small)[1].tobytes()


@pytest.fixture(scope="module")
def small_faces(detector, small_png) -> list[dict]:
    return as_json(detector.detect_faces(small_png))


class Counting(MTCNN):
    """A detector that records the number of images in each detect call, and can be slow."""

    def __init__(self, calls: list, delay: float = 0.0, **kwargs):
        super().__init__(device="cpu", **kwargs)
        self.calls, self.delay = calls, delay

    def detect(self, images, return_exceptions=False):
        self.calls.append(len(images) if isinstance(images, list) else 1)
        time.sleep(self.delay)
        return super().detect(images, return_exceptions=return_exceptions)


def counting(calls: list, delay: float = 0.0):
    """A detector factory for create_app: Counting detectors with the request's settings."""
    return lambda s: Counting(calls, delay, min_face_size=s.min_face, thresholds=s.thresholds)


# ---- answers ------------------------------------------------------------------------------------

def test_health(client):
    r = client.get("/health")
    assert r.status_code == 200
    assert r.json()["status"] == "ok" and r.json()["pid"] == os.getpid()


def test_same_faces_as_the_library_body_and_multipart(client, detector, astronaut_path):
    data = astronaut_path.read_bytes()
    expected = {"faces": as_json(detector.detect_faces(astronaut_path)), "width": 512, "height": 512}
    assert len(expected["faces"]) >= 1
    body = client.post("/detect", content=data, headers={"Content-Type": "image/png"})
    form = client.post("/detect", files={"image": ("astronaut.png", data, "image/png")})
    assert body.status_code == 200 and form.status_code == 200, (body.text, form.text)
    assert body.json() == expected
    assert form.json() == expected


def test_query_settings_are_the_library_settings(client, astronaut_path):
    reference = MTCNN(device="cpu", min_face_size=40, thresholds=(0.5, 0.6, 0.8))
    r = client.post("/detect", params={"min_face": 40, "thresholds": "0.5,0.6,0.8"},
                    content=astronaut_path.read_bytes())
    assert r.status_code == 200, r.text
    assert r.json()["faces"] == as_json(reference.detect_faces(astronaut_path))


def test_blur_masks_the_faces_as_the_library_does(client, detector, astronaut_path, astronaut):
    from openmtcnn.anonymise import anonymise

    found = detector.detect(astronaut)
    r = client.post("/blur", params={"mode": "mosaic", "shape": "box"}, content=astronaut_path.read_bytes())
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "image/png" and r.headers["X-Faces"] == str(len(found.scores))
    got = cv2.cvtColor(cv2.imdecode(np.frombuffer(r.content, np.uint8), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
    assert np.array_equal(got, anonymise(astronaut, found, mode="mosaic", shape="box"))
    assert not np.array_equal(got, astronaut)
    files = {"image": ("astronaut.png", astronaut_path.read_bytes(), "image/png")}
    r = client.post("/blur", params={"format": "jpeg"}, files=files)
    assert r.status_code == 200 and r.headers["content-type"] == "image/jpeg"
    assert cv2.imdecode(np.frombuffer(r.content, np.uint8), cv2.IMREAD_COLOR).shape == (512, 512, 3)
    for params in ({"mode": "swirl"}, {"shape": "star"}, {"mask_scale": 0}, {"format": "gif"}):
        r = client.post("/blur", params=params, content=astronaut_path.read_bytes())
        assert r.status_code == 422, (params, r.text)
    assert client.post("/blur", content=b"not an image").status_code == 422


# ---- bad input ----------------------------------------------------------------------------------

def test_bad_input_gets_4xx_with_the_reason(client, astronaut_path):
    data = astronaut_path.read_bytes()
    r = client.post("/detect", content=b"definitely not an image")
    assert r.status_code == 422 and "could not decode" in r.json()["detail"]
    r = client.post("/detect", content=png_header(20000, 20000))
    assert r.status_code == 413 and "20000x20000" in r.json()["detail"] and "max_pixels" in r.json()["detail"]
    r = client.post("/detect", params={"min_face": 1}, content=data)  # a 12x larger first pyramid level
    assert r.status_code == 413 and "min_face=1" in r.json()["detail"]
    r = client.post("/detect", files={"photo": ("a.png", data, "image/png")})
    assert r.status_code == 422 and "'image'" in r.json()["detail"]
    assert client.get("/detect").status_code == 405
    assert client.post("/nowhere", content=data).status_code == 404
    for params in ({"min_face": 0}, {"min_face": "big"}, {"min_face": "nan"}, {"thresholds": "0.5,0.6"},
                   {"thresholds": "0.5,2,0.7"}, {"thresholds": "a,b,c"}):
        r = client.post("/detect", params=params, content=data)
        assert r.status_code == 422, (params, r.text)
    assert client.get("/health").status_code == 200  # and the server goes on


def test_too_many_bytes_is_413_with_or_without_a_length():
    with running(ServeConfig(device="cpu", max_bytes=1000)) as client:
        r = client.post("/detect", content=b"x" * 5000)  # Content-Length: refused before the body is read
        assert r.status_code == 413 and "max_bytes=1000" in r.json()["detail"]
        r = client.post("/detect", content=iter([b"x" * 600] * 8))  # chunked: refused once 1000 bytes came
        assert r.status_code == 413
        r = client.post("/detect", content=b"still not an image")
        assert r.status_code == 422


# ---- load -----------------------------------------------------------------------------------------

def test_32_concurrent_clients(client, small_png, small_faces):
    def ten_requests(i: int) -> list[tuple[int, list]]:
        with httpx.Client(base_url=client.base_url, timeout=TIMEOUT) as own:
            return [(r.status_code, r.json()["faces"]) for r in
                    (own.post("/detect", content=small_png) for _ in range(10))]

    results = concurrently(32, ten_requests)
    for answers in results:
        assert not isinstance(answers, Exception), answers
        assert answers == [(200, small_faces)] * 10


def test_back_pressure_is_503_with_retry_after(small_png):
    calls: list[int] = []
    config = ServeConfig(queue=1, max_batch=1, retry_after=2)
    with running(config, counting(calls, delay=0.5)) as client:
        answers = concurrently(6, lambda i: client.post("/detect", content=small_png))
    assert not any(isinstance(r, Exception) for r in answers), answers
    codes = sorted(r.status_code for r in answers)
    assert set(codes) <= {200, 503} and codes.count(200) >= 1 and codes.count(503) >= 1, codes
    for r in answers:
        if r.status_code == 503:
            assert r.headers["Retry-After"] == "2" and "busy" in r.json()["detail"]


@pytest.mark.parametrize("batching", [True, False])
def test_dynamic_batching_shares_detect_calls(batching, small_png, small_faces):
    calls: list[int] = []
    reference = as_json(MTCNN(device="cpu", min_face_size=40).detect_faces(small_png))
    config = ServeConfig(batching=batching, batch_wait_ms=300, max_batch=8)
    with running(config, counting(calls)) as client:
        answers = concurrently(8, lambda i: client.post("/detect", params={"min_face": 40} if i % 2 else {},
                                                        content=small_png))
    assert not any(isinstance(r, Exception) for r in answers), answers
    for i, r in enumerate(answers):
        assert r.status_code == 200, r.text
        assert r.json()["faces"] == (reference if i % 2 else small_faces)
    assert sum(calls) == 8
    if batching:  # each batch makes one call per settings: 2 at best, fewer than one per request
        assert max(calls) >= 2 and len(calls) < 8, calls
    else:
        assert calls == [1] * 8


def test_settings_cache_keeps_a_few_detectors():
    calls: list[int] = []
    from openmtcnn.serve.app import Service

    service = Service(ServeConfig(detectors=2), counting(calls))
    for min_face in (20, 30, 40, 30):
        service.detector(Settings(min_face, (0.6, 0.7, 0.7)))
    assert [s.min_face for s in service.detectors] == [40, 30]



def test_batch_pixels_splits_a_batch_and_memory_is_released(small_png, small_faces, monkeypatch):
    """A batch whose images hold more than batch_pixels runs as several detect calls, each image's faces as
    alone; a bad image keeps its error; the allocator's free memory is released after every batch."""
    from openmtcnn.detect.image import ImageError
    from openmtcnn.serve import app as serve_app

    released: list[int] = []
    monkeypatch.setattr(serve_app, "release_memory", lambda: released.append(1))
    calls: list[int] = []
    settings = ServeConfig().settings()
    items = [serve_app.Item(small_png, settings) for _ in range(5)]
    items.insert(2, serve_app.Item(b"not an image", settings))
    service = serve_app.Service(ServeConfig(batch_pixels=2 * 160 * 120), counting(calls))
    results = service.detect_batch(items)
    assert calls == [2, 2, 1] and released == [1]
    assert isinstance(results[2], ImageError)
    for r in results[:2] + results[3:]:
        assert r.image.shape == (120, 160, 3) and as_json(to_dicts(r.detections)) == small_faces
    calls.clear()
    service = serve_app.Service(ServeConfig(batch_pixels=None, release_memory=False), counting(calls))
    service.detect_batch(items)
    assert calls == [5] and released == [1]
    for bad in (0, -1, True, 2.5):
        with pytest.raises(ValueError, match="batch_pixels"):
            ServeConfig(batch_pixels=bad)
    serve_app._trim()  # the real one: glibc's malloc_trim here, a no-op elsewhere; must not fail

# ---- processes --------------------------------------------------------------------------------

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_release_memory_turns_onnx_runtimes_arena_off(monkeypatch):
    """With release_memory and batching (the defaults) the server's detectors' sessions have no CPU arena,
    which never shrinks; otherwise they keep the library's default (arena on)."""
    from openmtcnn.runtime import onnx as ort_runtime
    from openmtcnn.serve import app as serve_app

    monkeypatch.setitem(ort_runtime._CPU_ARENA, "on", True)  # whatever the test does, restored after it
    settings = Settings(min_face=20, thresholds=(0.6, 0.7, 0.7))
    serve_app.detector_factory(ServeConfig(release_memory=False))(settings)
    assert ort_runtime.session_options(1).enable_cpu_mem_arena is True
    serve_app.detector_factory(ServeConfig(batching=False))(settings)
    assert ort_runtime.session_options(1).enable_cpu_mem_arena is True
    serve_app.detector_factory(ServeConfig())(settings)
    assert ort_runtime.session_options(1).enable_cpu_mem_arena is False


def test_cli_memory_options_reach_the_config():
    """--batch-pixels and --no-release-memory set the ServeConfig; 0 lifts the cap."""
    from openmtcnn.cli.main import build_parser
    from openmtcnn.cli.serve import config_from_args

    parse = build_parser().parse_args
    assert config_from_args(parse(["serve"])).batch_pixels == ServeConfig().batch_pixels
    cfg = config_from_args(parse(["serve", "--batch-pixels", "0", "--no-release-memory"]))
    assert cfg.batch_pixels is None and cfg.release_memory is False
    assert config_from_args(parse(["serve", "--batch-pixels", "1000000"])).batch_pixels == 1_000_000


def test_cli_with_two_worker_processes(repo_root, small_png, small_faces):
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(repo_root) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    proc = subprocess.Popen([sys.executable, "-m", "openmtcnn.cli.main", "serve", "--port", str(port),
                             "--workers", "2", "--device", "cpu"], env=env, cwd=repo_root,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=TIMEOUT) as client:
            deadline = time.monotonic() + 60
            while True:
                assert proc.poll() is None, proc.stderr.read()
                assert time.monotonic() < deadline, "the server did not start"
                try:
                    if client.get("/health").status_code == 200:
                        break
                except httpx.TransportError:
                    time.sleep(0.2)
            answers = [client.post("/detect", content=small_png) for _ in range(4)]
            assert [(r.status_code, r.json()["faces"]) for r in answers] == [(200, small_faces)] * 4
            pids = {client.get("/health").json()["pid"] for _ in range(8)}
            assert proc.pid not in pids  # the parent only supervises; detectors live in the workers
        children = Path(f"/proc/{proc.pid}/task/{proc.pid}/children")
        if children.exists():
            assert len(children.read_text().split()) >= 2
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(TIMEOUT)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(TIMEOUT)
    assert proc.returncode == 0, proc.stderr.read()


def test_import_openmtcnn_does_not_import_fastapi(repo_root):
    code = ("import sys, openmtcnn, openmtcnn.serve; from openmtcnn.cli.main import build_parser; build_parser(); "
            "print(sorted(m for m in ('fastapi', 'uvicorn', 'starlette') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], cwd=repo_root, capture_output=True, text=True, timeout=TIMEOUT)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
