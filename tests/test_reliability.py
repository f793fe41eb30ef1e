"""Reliability: undecodable and huge images, bad items in lists, forked processes, damaged weight sets,
PIL modes and EXIF orientation, and the CLI's results surviving errors and Ctrl-C."""
from __future__ import annotations

import importlib.util
import io
import json
import multiprocessing
import os
import shutil
import signal
import struct
import sys
import time
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest

from openmtcnn import MTCNN, Detections, geometry
from openmtcnn.cli import detect as cli_detect
from openmtcnn.cli.main import main
from openmtcnn.detect.header import image_size
from openmtcnn.detect.image import IMAGE_EXTS, ImageError, to_rgb
from openmtcnn.weights import WeightsError, load_state, weights_dir


def assert_same(a: Detections, b: Detections) -> None:
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)


def encode(rgb: np.ndarray, ext: str, *params: int) -> bytes:
    ok, buf = cv2.imencode(ext, cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR) if rgb.ndim == 3 else rgb, list(params))
    assert ok
    return buf.tobytes()


def png_header(width: int, height: int) -> bytes:
    """A PNG that declares width x height and holds no pixels: a few dozen bytes."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b""))


def bmp_header(width: int, height: int) -> bytes:
    """A 24-bit BMP header (no pixels) declaring width x height."""
    return b"BM" + struct.pack("<IHHI", 54, 0, 0, 54) + struct.pack("<IiiHHIIiiII", 40, width, height, 1, 24,
                                                                       0, 0, 0, 0, 0, 0)


def jpeg_header(width: int, height: int) -> bytes:
    """SOI, a JFIF APP0 segment, then a baseline frame header declaring width x height."""
    app0 = b"\xff\xe0\x00\x10JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00"
    sof = b"\xff\xc0\x00\x11\x08" + struct.pack(">HH", height, width) + b"\x03\x01\x22\x00\x02\x11\x01\x03\x11\x01"
    return b"\xff\xd8" + app0 + sof


def tiff_header_big_endian(width: int, height: int) -> bytes:
    """A big-endian TIFF whose first IFD gives ImageWidth as SHORT and ImageLength as LONG."""
    entries = struct.pack(">HHIHH", 256, 3, 1, width, 0) + struct.pack(">HHII", 257, 4, 1, height)
    return b"MM\x00*" + struct.pack(">I", 8) + struct.pack(">H", 2) + entries + b"\0\0\0\0"


def webp_vp8x(width: int, height: int) -> bytes:
    body = b"WEBPVP8X" + struct.pack("<I", 10) + b"\0\0\0\0" + (width - 1).to_bytes(3, "little") \
        + (height - 1).to_bytes(3, "little")
    return b"RIFF" + struct.pack("<I", len(body)) + body


@pytest.fixture(scope="module")
def threaded():
    """A detector whose worker pool has started (two workers sharing the nets)."""
    d = MTCNN(threads=2, device="cpu")
    assert d.workers == 2
    return d


# ---- 1. decoder errors ---------------------------------------------------------------------------

def test_opencv_errors_become_value_errors_naming_the_file(detector, tmp_path):
    wide = bmp_header(2_000_000, 1)  # under the pixel limit, over OpenCV's width limit: cv2.error inside
    with pytest.raises(cv2.error):
        cv2.imdecode(np.frombuffer(wide, np.uint8), cv2.IMREAD_COLOR)
    with pytest.raises(ImageError, match="bytes.*OpenCV"):
        detector.detect(wide)
    path = tmp_path / "wide.bmp"
    path.write_bytes(wide)
    with pytest.raises(ValueError, match="wide.bmp.*re-save"):
        detector.detect_faces(path)
    with pytest.raises(ValueError, match="bytes"):  # a width of 0x7fffffff, with no pixel limit
        MTCNN(device="cpu", max_pixels=None).detect(bmp_header(0x7FFFFFFF, 1))


def test_any_decoder_error_is_a_value_error(detector, tmp_path, monkeypatch):
    """Fuzzed TIFF or GIF headers make some OpenCV decoders raise: whatever they raise is reported the same way."""
    def fails(buf, flags):
        raise cv2.error("OpenCV(5.0) tiff.cpp:1: error: (-2:Unspecified error) broken IFD in function 'readData'")

    path = tmp_path / "fuzzed.tif"
    path.write_bytes(b"II*\x00" + b"\x08\x00\x00\x00" + b"\xff" * 32)
    monkeypatch.setattr(cv2, "imdecode", fails)
    with pytest.raises(ImageError, match="fuzzed.tif.*broken IFD"):
        detector.detect(path)


# ---- 3. pixel limit ------------------------------------------------------------------------------

@pytest.mark.parametrize("ext,params", [
    (".png", ()), (".jpg", ()), (".bmp", ()), (".webp", (cv2.IMWRITE_WEBP_QUALITY, 80)),
    (".webp", (cv2.IMWRITE_WEBP_QUALITY, 101)), (".tiff", ()), (".ppm", ()), (".pgm", ()),
], ids=["png", "jpeg", "bmp", "webp-lossy", "webp-lossless", "tiff", "ppm", "pgm"])
def test_header_sizes_of_encoded_images(astronaut, ext, params):
    img = astronaut[:37, :53]
    data = encode(cv2.cvtColor(img, cv2.COLOR_RGB2GRAY) if ext == ".pgm" else img, ext, *params)
    assert image_size(data) == (53, 37)


@pytest.mark.parametrize("fmt,options", [
    ("JPEG", {"exif": True}), ("JPEG", {"progressive": True}), ("GIF", {}), ("WEBP", {"exif": True}),
    ("WEBP", {"lossless": True}), ("TIFF", {"compression": "tiff_lzw"}),
], ids=["jpeg-exif", "jpeg-progressive", "gif", "webp-extended", "webp-lossless", "tiff-lzw"])
def test_header_sizes_of_pil_files(astronaut, fmt, options):
    Image = pytest.importorskip("PIL.Image")
    if options.get("exif"):
        options = {"exif": Image.Exif()}
        options["exif"][0x0112] = 1
    buf = io.BytesIO()
    Image.fromarray(astronaut[:37, :53]).save(buf, format=fmt, **options)
    assert image_size(buf.getvalue()) == (53, 37)


def test_header_sizes_of_made_headers():
    assert image_size(png_header(20000, 30000)) == (20000, 30000)
    assert image_size(bmp_header(300, -200)) == (300, 200)  # top-down BMP
    assert image_size(jpeg_header(4000, 3000)) == (4000, 3000)
    assert image_size(tiff_header_big_endian(640, 70000)) == (640, 70000)
    assert image_size(webp_vp8x(16383, 9000)) == (16383, 9000)
    assert image_size(b"GIF89a" + struct.pack("<HH", 321, 123) + b"\0" * 8) == (321, 123)
    assert image_size(b"P6\n# a comment\n17 19\n255\n" + b"\0" * 10) == (17, 19)
    for junk in (b"", b"hello", b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"II*\x00\xff\xff\xff\xff", b"P6 x y"):
        assert image_size(junk) is None


def test_a_header_over_the_limit_is_refused_before_decoding(detector, tmp_path, monkeypatch):
    decoded = []
    real = cv2.imdecode
    monkeypatch.setattr(cv2, "imdecode", lambda *a: decoded.append(1) or real(*a))
    huge = png_header(20000, 20000)
    assert len(huge) < 100
    with pytest.raises(ImageError, match="20000x20000.*max_pixels"):
        detector.detect(huge)
    path = tmp_path / "huge.png"
    path.write_bytes(huge)
    with pytest.raises(ValueError, match="huge.png.*max_pixels"):
        detector.detect(path)
    for data in (jpeg_header(20000, 20000), bmp_header(20000, -20000), tiff_header_big_endian(20000, 20000),
                 webp_vp8x(16000, 16000)):
        with pytest.raises(ValueError, match="max_pixels"):
            detector.detect(data)
    assert not decoded, "the decoder must not see an image over the limit"


def test_pixel_limit_on_arrays_pil_images_and_unparsed_formats(astronaut):
    small = MTCNN(device="cpu", max_pixels=100 * 100)
    small.detect(np.zeros((100, 100, 3), np.uint8))  # at the limit: fine
    with pytest.raises(ValueError, match="max_pixels"):
        small.detect(np.zeros((101, 100, 3), np.uint8))
    with pytest.raises(ValueError, match="max_pixels"):
        small.detect(encode(astronaut, ".sr"))  # Sun raster: no header reader, checked after decoding
    Image = pytest.importorskip("PIL.Image")
    with pytest.raises(ValueError, match="max_pixels"):
        small.detect(Image.new("RGB", (200, 60)))


def test_no_pixel_limit_and_bad_limits(astronaut, astronaut_detections):
    assert_same(MTCNN(device="cpu", max_pixels=None).detect(astronaut), astronaut_detections)
    assert_same(MTCNN(device="cpu", max_pixels=512 * 512).detect(astronaut), astronaut_detections)
    for bad in (0, -1, 1.5, True, "big"):
        with pytest.raises(ValueError, match="max_pixels"):
            MTCNN(device="cpu", max_pixels=bad)


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs here")
def test_only_regular_files_are_read(detector, tmp_path):
    fifo = tmp_path / "pipe.png"
    os.mkfifo(fifo)
    start = time.monotonic()
    with pytest.raises(ValueError, match="regular file"):
        detector.detect(fifo)  # opening a FIFO to read would wait for a writer forever
    if Path("/dev/zero").exists():
        with pytest.raises(ValueError, match="regular file"):
            detector.detect("/dev/zero")  # reading it would never end
    assert time.monotonic() - start < 2


# ---- 3. large photos: the summed-area table in bands ---------------------------------------------

@pytest.fixture
def banded(monkeypatch):
    """Every image is sampled as a large photo is: its table in bands, of 4 rows (the fewest band_rows gives)."""
    monkeypatch.setattr(geometry, "LARGE_PIXELS", 0)
    monkeypatch.setattr(geometry, "BAND_VALUES", 1)


def random_boxes(rng: np.random.Generator, h: int, w: int, n: int = 60) -> np.ndarray:
    """Boxes of every kind crop_resize meets: tiny (bilinear) to larger than the image, partly or wholly outside."""
    x1, y1 = rng.uniform(-0.3 * w, 1.1 * w, n), rng.uniform(-0.3 * h, 1.1 * h, n)
    side = rng.uniform(1, 1.5 * max(h, w), n)
    boxes = np.stack([x1, y1, x1 + side * rng.uniform(0.7, 1.3, n), y1 + side], axis=1)
    boxes[::3] = np.round(boxes[::3])
    return boxes


@pytest.mark.parametrize("h,w,rows", [(1, 1, 1), (5, 9, 2), (61, 83, 7), (64, 50, 16), (40, 33, 40), (37, 70, 100)])
def test_bands_give_the_whole_tables_numbers(h, w, rows):
    """Bands, pyramid strips and crops from a banded table: bit for bit those of the whole table."""
    rng = np.random.default_rng(h * w + rows)
    img = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    whole, bands = geometry.integral_image(img, rows=0), geometry.integral_image(img, rows=rows)
    assert isinstance(bands, geometry.BandedIntegral) and bands.shape == whole.shape
    for k in range(bands.bands):
        first, part = bands.band(k)
        np.testing.assert_array_equal(part, whole[first:first + rows + 2])
    requests = [(sw, sh, a, b) for sw, sh in ((max(1, w // 3), max(1, h // 3)), (2 * w, h + 5), (7, 3))
                for a, b in ((0, sh), (sh // 2, sh), (0, max(1, sh // 3)))]
    strips = dict(geometry.area_resizes(bands, requests, channels_first=True))
    for i, (sw, sh, a, b) in enumerate(requests):
        ref = geometry.area_resize(whole, sw, sh, True, rows=(a, b))
        np.testing.assert_array_equal(strips[i], ref)
        np.testing.assert_array_equal(geometry.area_resize(bands, sw, sh, True, rows=(a, b)), ref)
    boxes = random_boxes(rng, h, w)
    for size in (12, 24, 48):
        for channels_first in (False, True):
            ref = geometry.crop_resize(img, boxes, size, channels_first, integral=whole)
            np.testing.assert_array_equal(geometry.crop_resize(img, boxes, size, channels_first, integral=bands), ref)


def test_crops_of_a_large_image_without_a_table_are_the_same(astronaut, monkeypatch):
    boxes = random_boxes(np.random.default_rng(0), *astronaut.shape[:2], n=200)
    ref = geometry.crop_resize(astronaut, boxes, 24)
    monkeypatch.setattr(geometry, "LARGE_PIXELS", 0)
    np.testing.assert_array_equal(geometry.crop_resize(astronaut, boxes, 24), ref)  # bilinear ones in bands too


@pytest.mark.parametrize("threads", [1, 2])
def test_large_photo_path_finds_the_same_faces(astronaut, monkeypatch, threads):
    photo = np.ascontiguousarray(np.tile(astronaut, (2, 3, 1)))  # 1024 x 1536: P-Net levels in strips and whole
    plain = MTCNN(threads=threads, device="cpu")
    ref, ref_list, until_rnet = plain.detect(photo), plain.detect([photo, astronaut]), plain.run(photo, until="rnet")
    assert len(ref.boxes) >= 6
    bands = []
    real = geometry.BandedIntegral.band
    monkeypatch.setattr(geometry.BandedIntegral, "band", lambda self, k: bands.append(k) or real(self, k))
    monkeypatch.setattr(geometry, "LARGE_PIXELS", 0)
    monkeypatch.setattr(geometry, "BAND_VALUES", 1)
    detector = MTCNN(threads=threads, device="cpu")
    assert_same(detector.detect(photo), ref)
    assert bands and min(bands) == 0 and max(bands) == 1024 // 4 - 1, "the banded path ran, over every band"
    for got, want in zip(detector.detect([photo, astronaut]), ref_list):
        assert_same(got, want)
    for got, want in zip(detector.run(photo, until="rnet"), until_rnet):
        np.testing.assert_array_equal(got, want)
    assert_same(detector.rescore(photo, ref.boxes), plain.rescore(photo, ref.boxes))


# ---- 5. PIL modes, float arrays, EXIF orientation ----------------------------------------------

def sixteen_bit(astronaut) -> np.ndarray:
    """The sample picture in grey as the high byte of 16-bit values whose low bytes vary."""
    grey = cv2.cvtColor(astronaut, cv2.COLOR_RGB2GRAY).astype(np.uint16)
    return grey * 256 + np.arange(grey.size, dtype=np.uint16).reshape(grey.shape) % 256


def test_16_bit_pil_images_read_as_opencv_reads_16_bit_files(astronaut):
    Image = pytest.importorskip("PIL.Image")
    a16 = sixteen_bit(astronaut)
    expected = np.repeat((a16 >> 8).astype(np.uint8)[:, :, None], 3, axis=2)
    png16 = encode(a16, ".png")
    np.testing.assert_array_equal(to_rgb(png16), expected)  # OpenCV: the high byte
    opened = Image.open(io.BytesIO(png16))
    assert opened.mode.startswith("I")
    np.testing.assert_array_equal(to_rgb(opened), expected)  # the same file through PIL: the same pixels
    np.testing.assert_array_equal(to_rgb(Image.fromarray(a16)), expected)  # mode I;16
    as_i = Image.fromarray(a16.astype(np.int32))
    assert as_i.mode == "I"
    np.testing.assert_array_equal(to_rgb(as_i), expected)
    with pytest.raises(ValueError, match="0-65535"):
        to_rgb(Image.fromarray(np.full((20, 20), 70000, np.int32)))
    assert to_rgb(Image.fromarray(np.full((20, 20), 65535, np.uint16))).min() == 255  # not near-black
    assert to_rgb(Image.fromarray(np.full((20, 20), 256, np.uint16))).max() == 1  # not near-white


def test_float_images_are_type_errors_that_say_how_to_scale():
    with pytest.raises(TypeError, match=r"\[0, 1\] multiply by 255"):
        to_rgb(np.zeros((20, 20, 3), np.float32))
    with pytest.raises(TypeError, match="high byte"):
        to_rgb(np.zeros((20, 20), np.uint16))
    Image = pytest.importorskip("PIL.Image")
    with pytest.raises(TypeError, match=r"mode F.*\* 255"):
        to_rgb(Image.fromarray(np.zeros((20, 20), np.float32)))


def test_exif_orientation_is_the_same_for_paths_bytes_and_pil(astronaut, tmp_path):
    Image = pytest.importorskip("PIL.Image")
    stored = astronaut[:, :384]  # 384 wide, 512 high, stored as is
    exif = Image.Exif()
    exif[0x0112] = 6  # display rotated 90 degrees clockwise
    path = tmp_path / "rotated.jpg"
    Image.fromarray(stored).save(path, quality=95, exif=exif)
    from_path, from_bytes = to_rgb(path), to_rgb(path.read_bytes())
    np.testing.assert_array_equal(from_path, from_bytes)
    assert from_path.shape == (384, 512, 3)  # turned upright
    with Image.open(path) as im:
        from_pil = to_rgb(im)
    assert from_pil.shape == from_path.shape
    assert np.abs(from_pil.astype(int) - from_path.astype(int)).mean() < 1
    assert np.abs(np.rot90(stored, k=-1).astype(int) - from_path.astype(int)).mean() < 3


# ---- 6. one bad item in a list ---------------------------------------------------------------------

def test_return_exceptions_keeps_the_good_items(detector, astronaut, astronaut_detections):
    found = detector.detect([astronaut, b"not an image", astronaut, 7], return_exceptions=True)
    assert len(found) == 4
    assert_same(found[0], astronaut_detections)
    assert_same(found[2], astronaut_detections)
    assert isinstance(found[1], ValueError) and "image 1 " in str(found[1])
    assert isinstance(found[3], TypeError) and "image 3 " in str(found[3])
    assert all(isinstance(e, Exception) for e in detector.detect([b"x", None], return_exceptions=True))


def test_a_bad_item_raises_naming_its_index(detector, astronaut, tmp_path):
    with pytest.raises(ValueError, match="image 1 of the list: bytes"):
        detector.detect([astronaut, b"junk", astronaut])
    with pytest.raises(FileNotFoundError, match="image 2 of the list.*nope.png"):
        detector.detect((astronaut, astronaut, tmp_path / "nope.png"))


def test_run_with_a_bad_item_tells_the_observer_the_list_indices(detector, astronaut):
    heard = []
    found = detector.run([astronaut, b"junk", astronaut], until="rnet", return_exceptions=True,
                         observer=lambda stage, i, c, s: heard.append((stage, i)))
    assert isinstance(found[1], ValueError)
    assert {i for _, i in heard} == {0, 2}
    assert [s for s, i in heard if i == 2] == ["pnet", "rnet"]


def test_return_exceptions_on_the_workers(threaded, astronaut):
    reference = threaded.detect(astronaut)
    images = [astronaut, b"junk", astronaut, astronaut, 3.5, astronaut]  # two chunks of 4, run in parallel
    found = threaded.detect(images, return_exceptions=True)
    assert [type(f).__name__ for f in found] == ["Detections", "ImageError", "Detections", "Detections",
                                                 "TypeError", "Detections"]
    for f in found[0], found[2], found[5]:
        assert_same(f, reference)
    with pytest.raises(TypeError, match="image 4 of the list"):
        threaded.detect([astronaut] * 4 + [3.5])  # the second chunk's first item


# ---- 2. fork safety --------------------------------------------------------------------------------

def wait_for(pid: int, seconds: float) -> int:
    """The exit code of child ``pid``; a child still running after ``seconds`` is killed and fails the test."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status)
        time.sleep(0.02)
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    pytest.fail(f"the forked child hung for {seconds} s")


needs_fork = pytest.mark.skipif(not hasattr(os, "fork") or sys.platform == "darwin", reason="needs os.fork")


@needs_fork
@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # Python 3.12+: fork() of a threaded process
def test_detector_with_started_workers_works_in_a_forked_child(threaded, astronaut_path):
    reference = threaded.detect(astronaut_path)
    assert threaded._executor is not None, "the test needs the pool started in the parent"
    pid = os.fork()
    if pid == 0:  # the child: no pytest here, only an exit code
        code = 3
        try:
            signal.alarm(10)
            found = threaded.detect(astronaut_path)
            threaded.detect([astronaut_path] * 3)  # the list path uses the workers too
            code = 0 if all(np.array_equal(a, b) for a, b in zip(found, reference)) else 1
        finally:
            os._exit(code)
    assert wait_for(pid, 15) == 0
    assert_same(threaded.detect(astronaut_path), reference)  # the parent's pool still works


def detect_in_child(detector, path, queue) -> None:
    queue.put([np.asarray(a) for a in detector.detect(path)])


@needs_fork
@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_detector_in_a_multiprocessing_fork_child(threaded, astronaut_path):
    reference = threaded.detect(astronaut_path)
    ctx = multiprocessing.get_context("fork")
    queue = ctx.Queue()
    child = ctx.Process(target=detect_in_child, args=(threaded, astronaut_path, queue))  # fork: no pickling
    child.start()
    try:
        found = queue.get(timeout=15)
    finally:
        child.join(5)
        if child.is_alive():
            child.kill()
    assert child.exitcode == 0
    for a, b in zip(found, reference):
        np.testing.assert_array_equal(a, b)


@needs_fork
@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_onnx_runtime_sessions_work_after_fork():
    """A session with its own intra-op threads, used before the fork, gives the same numbers in the child."""
    from openmtcnn.runtime.onnx import OrtNet
    from openmtcnn.weights import onnx_path

    net = OrtNet(onnx_path("published", "pnet"), threads=2, device="cpu", stage="pnet")
    batch = np.random.default_rng(0).uniform(0, 255, (2, 3, 200, 200)).astype(np.float32)
    reference = net(batch)
    pid = os.fork()
    if pid == 0:
        code = 3
        try:
            signal.alarm(10)
            code = 0 if all(np.array_equal(a, b) for a, b in zip(net(batch), reference)) else 1
        finally:
            os._exit(code)
    assert wait_for(pid, 15) == 0


# ---- 4. damaged weight sets ------------------------------------------------------------------------

@pytest.fixture
def weight_copy(tmp_path) -> Path:
    """The published ONNX files and manifest in a folder of their own (no npz: ONNX Runtime needs none)."""
    folder = tmp_path / "mine"
    folder.mkdir()
    for name in ("pnet.onnx", "rnet.onnx", "onet.onnx", "manifest.json"):
        shutil.copy(weights_dir("published") / name, folder / name)
    return folder


def test_truncated_onnx_file(weight_copy):
    pnet = weight_copy / "pnet.onnx"
    pnet.write_bytes(pnet.read_bytes()[:1000])
    with pytest.raises(WeightsError, match=r"pnet\.onnx.*ONNX Runtime cannot load it"):
        MTCNN(weights=str(weight_copy), device="cpu")


@pytest.mark.parametrize("source,target", [("rnet", "pnet"), ("onet", "rnet"), ("pnet", "onet")])
def test_swapped_onnx_files(weight_copy, source, target):
    shutil.copy(weight_copy / f"{source}.onnx", weight_copy / f"{target}.onnx")
    with pytest.raises(WeightsError, match=rf"{target}\.onnx.*another stage's file"):
        MTCNN(weights=str(weight_copy), device="cpu")
    with pytest.raises(WeightsError, match=rf"{target}\.onnx"):
        MTCNN(weights=str(weight_copy), backend="opencv")


@pytest.mark.parametrize("text", ["[1, 2, 3]", '"published"', "null", "{not json", "\xff\xfe"],
                         ids=["list", "string", "null", "broken", "not-utf8"])
def test_manifest_that_is_not_an_object(weight_copy, text):
    (weight_copy / "manifest.json").write_bytes(text.encode("latin-1"))
    with pytest.raises(WeightsError, match=r"manifest\.json"):
        MTCNN(weights=str(weight_copy), device="cpu")


def test_float_weights_naming_itself_or_a_cycle(weight_copy, tmp_path):
    info = json.loads((weight_copy / "manifest.json").read_text())
    (weight_copy / "manifest.json").write_text(json.dumps({**info, "float_weights": str(weight_copy)}))
    with pytest.raises(WeightsError, match=r"manifest\.json.*itself"):
        MTCNN(weights=str(weight_copy), device="cpu")
    with pytest.raises(WeightsError, match=r"manifest\.json"):
        load_state(str(weight_copy), "pnet")
    other = tmp_path / "other"
    shutil.copytree(weight_copy, other)
    (weight_copy / "manifest.json").write_text(json.dumps({**info, "float_weights": str(other)}))
    (other / "manifest.json").write_text(json.dumps({**info, "float_weights": str(weight_copy)}))
    with pytest.raises(WeightsError, match="cycle"):
        MTCNN(weights=str(weight_copy), device="cpu")
    (other / "manifest.json").write_text(json.dumps({**info, "float_weights": str(tmp_path / "none")}))
    with pytest.raises(WeightsError, match="float_weights"):
        load_state(str(weight_copy), "pnet")


def test_damaged_torch_npz_is_named(weight_copy):
    data = (weights_dir("published") / "torch.npz").read_bytes()
    middle = bytearray(data)
    middle[len(data) // 2:len(data) // 2 + 64] = bytes(64)
    for damaged in (data[:len(data) // 2], data[:100], bytes(middle)):
        (weight_copy / "torch.npz").write_bytes(damaged)
        with pytest.raises(WeightsError, match=r"torch\.npz.*damaged"):
            load_state(str(weight_copy), "onet")


def test_cli_with_a_damaged_weight_set(weight_copy, astronaut_path, capsys):
    shutil.copy(weight_copy / "rnet.onnx", weight_copy / "pnet.onnx")
    assert main(["detect", str(astronaut_path), "--weights", str(weight_copy), "--quiet"]) == 1
    err = capsys.readouterr().err
    assert "pnet.onnx" in err and "Traceback" not in err


# ---- 1, 7. the command line ------------------------------------------------------------------------

def test_cli_reports_bad_files_and_goes_on(astronaut_path, tmp_path, capsys):
    src = tmp_path / "photos"
    src.mkdir()
    shutil.copy(astronaut_path, src / "a.png")
    (src / "wide.bmp").write_bytes(bmp_header(2_000_000, 1))  # cv2.error inside OpenCV
    (src / "huge.png").write_bytes(png_header(20000, 20000))  # over the pixel limit
    (src / "broken.tif").write_bytes(b"II*\x00\x08\x00\x00\x00" + b"\xff" * 40)
    js = tmp_path / "r.json"
    assert main(["detect", str(src), "--json", str(js), "--quiet"]) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err
    for name in ("wide.bmp", "huge.png", "broken.tif"):
        assert name in err
    assert "3 of 4 inputs failed" in err
    results = json.loads(js.read_text())
    assert list(results) == [str(src / "a.png")] and results[str(src / "a.png")]


@pytest.mark.skipif(".gif" not in IMAGE_EXTS, reason="this OpenCV does not read GIF files")
def test_gif_files_are_found_in_folders(astronaut, tmp_path, capsys):
    src = tmp_path / "photos"
    src.mkdir()
    gif = encode(astronaut, ".gif") if cv2.haveImageWriter("x.gif") else None
    if gif is None:
        Image = pytest.importorskip("PIL.Image")
        buf = io.BytesIO()
        Image.fromarray(astronaut).save(buf, format="GIF")
        gif = buf.getvalue()
    (src / "face.gif").write_bytes(gif)
    js, out = tmp_path / "r.json", tmp_path / "out"
    assert main(["detect", str(src), "--json", str(js), "--out", str(out), "--quiet"]) == 0, capsys.readouterr().err
    assert list(json.loads(js.read_text())) == [str(src / "face.gif")]
    assert [p.suffix for p in out.rglob("*") if p.is_file()] == [".png"]  # annotated as PNG


def test_cli_checks_output_paths_before_any_work(astronaut_path, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(cli_detect, "make_detector", lambda args: pytest.fail("work began"))
    a_file = tmp_path / "taken"
    a_file.write_text("x")
    cases = [(["--out", str(a_file)], "--out"), (["--json", str(a_file / "r.json")], "--json"),
             (["--json", str(tmp_path)], "--json"), (["--out", str(a_file / "sub")], "--out")]
    for extra, option in cases:
        assert main(["detect", str(astronaut_path), "--quiet", *extra]) == 2
        err = capsys.readouterr().err
        assert option in err and "Traceback" not in err


def test_json_is_written_as_results_come_and_survives_ctrl_c(astronaut_path, tmp_path, capsys, monkeypatch):
    src = tmp_path / "photos"
    src.mkdir()
    for name in ("a.png", "b.png", "c.png"):
        shutil.copy(astronaut_path, src / name)
    js = tmp_path / "out" / "r.json"
    real, seen = cli_detect.detect_input, []

    def detect_input(detector, path, out_path, quiet):
        if path.name == "b.png":  # the first result is on disk while the second input runs
            seen.append(json.loads(js.read_text()))
        if path.name == "c.png":
            raise KeyboardInterrupt
        return real(detector, path, out_path, quiet)

    monkeypatch.setattr(cli_detect, "detect_input", detect_input)
    assert main(["detect", str(src), "--json", str(js), "--quiet"]) == 130
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "interrupted after 2 of 3 inputs" in err[0] and str(js) in err[0]
    assert list(seen[0]) == [str(src / "a.png")]
    results = json.loads(js.read_text())
    assert list(results) == [str(src / "a.png"), str(src / "b.png")]
    assert results[str(src / "a.png")] == results[str(src / "b.png")] and results[str(src / "a.png")]
    assert not [p for p in js.parent.iterdir() if p != js], "no temporary files left"


def test_help_says_how_json_is_written(capsys):
    with pytest.raises(SystemExit):
        main(["detect", "--help"])
    assert "atomically" in " ".join(capsys.readouterr().out.split())


# ---- 8. fuzzing ------------------------------------------------------------------------------------

def test_fuzzed_files_raise_only_documented_errors(repo_root, capsys):
    """benchmarks/fuzz.py for 10 s: damaged PNG/JPEG/BMP/GIF/TIFF/WebP files to detect (bytes, paths) and the CLI."""
    spec = importlib.util.spec_from_file_location("fuzz", repo_root / "benchmarks" / "fuzz.py")
    fuzz = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(fuzz)
    threads = cv2.getNumThreads()
    try:
        result = fuzz.run(inputs=10**6, seconds=10, seed=1, cli_limit=200)
    finally:
        cv2.setNumThreads(threads)  # the detectors set OpenCV's process-wide count
    api, cli = result["api"], result["cli"]
    with capsys.disabled():
        print(f"\nfuzz: {api['inputs']} mutated files, {api['calls']} detect calls {api['outcomes']}; "
              f"CLI on {cli['files']} of them: exit {cli['exit_code']}")
    assert api["inputs"] >= 200 and {k.split(": ")[1] for k in api["outcomes"]} >= {"faces", "ImageError"}
    assert api["unexpected_count"] == 0, api["unexpected"]
    assert api["slowest_call_s"] < 5
    assert cli["exit_code"] in (0, 1) and not cli["traceback"] and cli["files"] > 0
