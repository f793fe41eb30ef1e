"""The HTTP app: ``POST /detect``, ``POST /blur``, ``GET /health``; one detector per worker process, requests batched.

Built on the public API only: ``MTCNN``, ``to_dicts``, ``anonymise`` and the image errors. Each worker
process makes its detector in the app's lifespan, after it has started, so nothing is shared across processes.
"""
from __future__ import annotations

import asyncio
import ctypes
import math
import os
from collections import OrderedDict
from contextlib import asynccontextmanager
from typing import Callable, Literal, NamedTuple, Optional, Union

try:
    from fastapi import FastAPI, HTTPException, Query, Request, Response
except ImportError as e:  # the serve extra is not installed
    raise ImportError("openmtcnn serve needs FastAPI and uvicorn: pip install 'openmtcnn[serve]'") from e

import cv2
import numpy as np
from starlette.requests import ClientDisconnect

from openmtcnn import MTCNN, Detections, __version__
from openmtcnn.anonymise import BlurConfig, anonymise
from openmtcnn.detect import pyramid_scales
from openmtcnn.detect.cascade import to_dicts
from openmtcnn.detect.image import ImageError, ImageTooLarge
from openmtcnn.runtime.onnx import use_cpu_arena
from openmtcnn.serve.batching import Batcher, QueueFull
from openmtcnn.serve.config import ServeConfig, Settings

CONFIG_ENV = "OPENMTCNN_SERVE_CONFIG"  # how `--workers N` hands the config to the worker processes
DetectorFactory = Callable[[Settings], MTCNN]


class Item(NamedTuple):
    """One request's image, as sent, and the settings to detect with."""

    body: bytes
    settings: Settings


class Found(NamedTuple):
    """One request's answer: the decoded image and its detections."""

    image: np.ndarray
    detections: Detections


def detector_factory(config: ServeConfig) -> DetectorFactory:
    """Makes the detector for a request's settings from the server's other settings."""
    threads = config.threads
    if threads is None and config.workers > 1:  # share the cores out, rather than every worker taking all of them
        threads = max(1, (os.cpu_count() or 1) // config.workers)

    # ONNX Runtime's arena grows to the largest batch it has seen and never shrinks: off when batching,
    # so that memory freed after a batch can go back (one image at a time, it stays small and is faster)
    use_cpu_arena(not (config.release_memory and config.batching))

    def make(settings: Settings) -> MTCNN:
        return MTCNN(min_face_size=settings.min_face, scale_factor=config.scale_factor,
                     thresholds=settings.thresholds, weights=config.weights, backend=config.backend,
                     device=config.device, threads=threads, max_pixels=config.max_pixels)

    return make


def read(detector: MTCNN, body: bytes) -> np.ndarray:
    """The image as RGB, refused (ImageTooLarge) when it or its first pyramid level is over ``max_pixels``.

    A small ``min_face`` enlarges the image for P-Net by 12 / min_face: the level's pixels are what cost memory.
    """
    image = detector.read(body)
    h, w = image.shape[:2]
    scales = pyramid_scales(h, w, detector.min_face_size, detector.scale_factor)
    level = math.ceil(w * scales[0]) * math.ceil(h * scales[0]) if scales else 0
    if detector.max_pixels is not None and level > detector.max_pixels:
        raise ImageTooLarge(f"min_face={detector.min_face_size:g} enlarges this {w}x{h} image {scales[0]:.2f} times, "
                            f"to {level} pixels, more than max_pixels={detector.max_pixels}; ask for a larger "
                            "min_face or send a smaller image")
    return image


class Service:
    """One worker process's detectors (one per settings, the last few kept) and the batcher in front of them."""

    def __init__(self, config: ServeConfig, make_detector: DetectorFactory):
        self.config, self.make_detector = config, make_detector
        self.detectors: OrderedDict[Settings, MTCNN] = OrderedDict()
        self.detector(config.settings())  # made now: bad weights or device fail at start, not on a request
        size, wait = (config.max_batch, config.batch_wait_ms / 1000) if config.batching else (1, 0.0)
        self.batcher = Batcher(self.detect_batch, size, wait, config.queue)

    def detector(self, settings: Settings) -> MTCNN:
        """The detector for ``settings``, made on first use (used at start, then on the batch thread only)."""
        if settings in self.detectors:
            self.detectors.move_to_end(settings)
        else:
            self.detectors[settings] = self.make_detector(settings)
            if len(self.detectors) > self.config.detectors:
                self.detectors.popitem(last=False)
        return self.detectors[settings]

    def detect_batch(self, items: list[Item]) -> list[Union[Found, Exception]]:
        """Each item's faces, or the error saying why its image cannot be used: one detect call per settings,
        or several in turn where the images hold more than ``batch_pixels`` pixels; then the free memory goes
        back to the system (``release_memory``)."""
        try:
            return self.detect_groups(items)
        finally:
            if self.config.release_memory:
                release_memory()

    def detect_groups(self, items: list[Item]) -> list[Union[Found, Exception]]:
        results: list[Union[Found, Exception, None]] = [None] * len(items)
        groups: dict[Settings, list[int]] = {}
        for i, item in enumerate(items):
            groups.setdefault(item.settings, []).append(i)
        limit = self.config.batch_pixels
        for settings, indices in groups.items():
            detector = self.detector(settings)
            images: dict[int, np.ndarray] = {}
            pixels = 0
            for i in indices:  # decoded in turn: a call starts as soon as the next image would go over the limit
                try:
                    image = read(detector, items[i].body)
                except ImageError as e:
                    results[i] = e
                    continue
                size = image.shape[0] * image.shape[1]
                if images and limit is not None and pixels + size > limit:
                    self.detect_images(detector, images, results)
                    images, pixels = {}, 0
                images[i], pixels = image, pixels + size
            self.detect_images(detector, images, results)
        return results  # type: ignore[return-value]

    @staticmethod
    def detect_images(detector: MTCNN, images: dict[int, np.ndarray], results: list) -> None:
        """One detect call on ``images`` (by item index); each one's ``Found`` or error into ``results``."""
        if len(images) == 1:  # a lone image gets all the detector's threads on its pyramid
            found = [detector.detect(next(iter(images.values())))]
        elif images:
            found = detector.detect(list(images.values()), return_exceptions=True)
        else:
            found = []
        for (i, image), d in zip(images.items(), found):
            results[i] = d if isinstance(d, Exception) else Found(image, d)


def _malloc_trim() -> Callable[[], object]:
    """glibc's ``malloc_trim(0)``, or a no-op where the C library has none (e.g. macOS, Windows)."""
    try:
        trim = ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError, TypeError):
        return lambda: None
    trim.argtypes, trim.restype = [ctypes.c_size_t], ctypes.c_int
    return lambda: trim(0)


_trim = _malloc_trim()


def release_memory() -> None:
    """Hand the C allocator's free memory back to the system.

    A batch's large arrays (decoded images, summed-area tables, crop batches: tens of MiB each) are
    allocated and freed by several threads; glibc keeps freed memory in its per-thread arenas for
    reuse (its mmap threshold rises to the largest block freed, up to 32 MiB, so such arrays come
    from the arenas rather than from mmap), and fragments that are never handed back make the
    resident size grow from one batch to the next. ``malloc_trim`` gives every free page of every
    arena back; with ONNX Runtime's arena off when batching (``detector_factory``), between batches
    the process holds its live data only.
    """
    _trim()


def server_options(config: ServeConfig) -> dict:
    """uvicorn's settings: at most ``queue + 2 * max_batch + 16`` connections (more: 503), so bodies in memory
    are bounded too."""
    return {"host": config.host, "port": config.port, "access_log": config.access_log,
            "limit_concurrency": config.queue + 2 * config.max_batch + 16, "timeout_graceful_shutdown": 10}


def parse_thresholds(text: str) -> tuple[float, float, float]:
    """'0.6,0.7,0.7' -> (0.6, 0.7, 0.7): P-Net, R-Net and O-Net's thresholds, each in [0, 1]; else 422."""
    try:
        values = tuple(float(v) for v in text.split(","))
    except ValueError:
        values = ()
    if len(values) != 3 or not all(0 <= v <= 1 for v in values):
        raise HTTPException(422, f"thresholds must be three numbers in [0, 1] separated by commas (P-Net, R-Net, "
                                 f"O-Net), e.g. 0.6,0.7,0.7; got {text!r}")
    return values  # type: ignore[return-value]


async def read_body(request: Request, limit: int) -> bytes:
    """The request body; 413 as soon as it is known to be over ``limit`` bytes: before reading it when it
    says its length, else once that much has come."""
    refuse = HTTPException(413, f"the request body is over max_bytes={limit} bytes; send a smaller image "
                                "(or start the server with a larger --max-bytes)")
    length = request.headers.get("content-length", "")
    if length.isdigit() and int(length) > limit:
        raise refuse
    body = bytearray()
    try:
        async for chunk in request.stream():
            body += chunk
            if len(body) > limit:
                raise refuse
    except ClientDisconnect:  # nobody will read the answer; a 400 rather than an error in the log
        raise HTTPException(400, "the client went away before sending the whole body") from None
    return bytes(body)


async def image_bytes(request: Request, limit: int) -> bytes:
    """The image: the whole body, or the file in the multipart form field ``image``."""
    body = await read_body(request, limit)
    if not request.headers.get("content-type", "").lower().startswith("multipart/form-data"):
        return body

    async def replay() -> dict:  # the body, already read, for the form parser
        return {"type": "http.request", "body": body, "more_body": False}

    async with Request(request.scope, replay).form() as form:
        part = form.get("image")
        if part is None or isinstance(part, str):
            raise HTTPException(422, "multipart requests need the image as a file in the field 'image' "
                                     "(curl -F image=@photo.jpg)")
        return await part.read()


def encode(image: np.ndarray, kind: str) -> bytes:
    """An RGB image as PNG or JPEG bytes."""
    ok, data = cv2.imencode(".png" if kind == "png" else ".jpg", cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    if not ok:
        raise RuntimeError(f"OpenCV could not encode a {image.shape} image as {kind}")
    return data.tobytes()


def create_app(config: ServeConfig, make_detector: Optional[DetectorFactory] = None) -> FastAPI:
    """The app; ``make_detector(settings)`` makes the detectors (default: ``MTCNN`` with the config's settings)."""
    make = make_detector or detector_factory(config)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        service = Service(config, make)  # in the worker process, once it runs: no detector crosses a fork
        service.batcher.start()
        app.state.service = service
        yield
        await service.batcher.close()

    app = FastAPI(title="openmtcnn", version=__version__, lifespan=lifespan,
                  description="MTCNN face detection: POST an image to /detect, or to /blur to mask its faces.")

    def busy(why: str) -> HTTPException:
        return HTTPException(503, f"busy: {why}; retry after {config.retry_after} s",
                             headers={"Retry-After": str(config.retry_after)})

    @app.get("/health")
    async def health(request: Request) -> dict:
        """Liveness, and how busy this worker process is."""
        batcher = request.app.state.service.batcher
        return {"status": "ok", "pid": os.getpid(), "batching": config.batching, "waiting": batcher.waiting,
                "queue": config.queue, "batches": batcher.batches, "requests": batcher.items}

    async def find(request: Request, min_face: Optional[float], thresholds: Optional[str]) -> Found:
        """The image of a request and its faces, through the batcher; the HTTP error when it cannot be had."""
        service = request.app.state.service
        settings = Settings(config.min_face if min_face is None else min_face,
                            config.thresholds if thresholds is None else parse_thresholds(thresholds))
        if service.batcher.queue.full():  # refuse before reading the body
            raise busy(f"the queue is full ({config.queue} waiting)")
        body = await image_bytes(request, config.max_bytes)
        try:
            return await service.batcher.submit(Item(body, settings))
        except QueueFull as e:
            raise busy(str(e)) from None
        except ImageTooLarge as e:
            raise HTTPException(413, str(e)) from None
        except ImageError as e:
            raise HTTPException(422, str(e)) from None

    min_face_query = Query(None, ge=1, description="smallest face to find, in pixels")
    thresholds_query = Query(None, description="P-Net,R-Net,O-Net thresholds, e.g. 0.6,0.7,0.7")

    @app.post("/detect")
    async def detect(request: Request, min_face: Optional[float] = min_face_query,
                     thresholds: Optional[str] = thresholds_query) -> dict:
        """Faces in the image sent as the body (or as the multipart field ``image``), as ``detect_faces`` gives them."""
        found = await find(request, min_face, thresholds)
        height, width = found.image.shape[:2]
        return {"faces": to_dicts(found.detections), "width": width, "height": height}

    @app.post("/blur", response_class=Response, responses={200: {"content": {"image/png": {}, "image/jpeg": {}}}})
    async def blur(request: Request, min_face: Optional[float] = min_face_query,
                   thresholds: Optional[str] = thresholds_query,
                   mode: str = Query("blur", description="blur, mosaic, solid or none"),
                   shape: str = Query("ellipse", description="ellipse or box"),
                   mask_scale: float = Query(1.3, description="box sides grown by this before masking"),
                   kind: Literal["png", "jpeg"] = Query("png", alias="format", description="of the image sent back"),
                   ) -> Response:
        """The image with its faces masked (``openmtcnn.anonymise``); the number of faces in ``X-Faces``."""
        try:
            BlurConfig(mode=mode, shape=shape, mask_scale=mask_scale)  # refuse bad options before any work
        except ValueError as e:
            raise HTTPException(422, str(e)) from None
        found = await find(request, min_face, thresholds)

        def mask() -> bytes:  # on a thread of its own: the batch thread goes on detecting
            return encode(anonymise(found.image, found.detections, mode=mode, shape=shape, mask_scale=mask_scale),
                          kind)

        return Response(await asyncio.to_thread(mask), media_type=f"image/{kind}",
                        headers={"X-Faces": str(len(found.detections.scores))})

    return app


def app_from_env() -> FastAPI:
    """A worker process's app, from the config its parent put in the environment (``--workers N``)."""
    return create_app(ServeConfig.from_json(os.environ[CONFIG_ENV]))


def serve(config: ServeConfig) -> None:
    """Run the server until interrupted: one process, or ``config.workers`` worker processes."""
    import uvicorn

    if config.workers == 1:
        uvicorn.run(create_app(config), **server_options(config))
    else:  # uvicorn spawns the workers; each imports the app factory and makes its own detector
        os.environ[CONFIG_ENV] = config.to_json()
        uvicorn.run(f"{__name__}:app_from_env", factory=True, workers=config.workers, **server_options(config))
