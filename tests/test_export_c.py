"""The int8 C export: host-compiled C and the NumPy reference give the same integers, nets and cascade."""
from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from openmtcnn.compress import int8
from openmtcnn.compress.int8_cascade import (
    CascadeConfig,
    Int8MTCNN,
    bilinear,
    fit_camera,
    load_float_nets,
    nms,
    quantize_cascade,
    resample,
)
from openmtcnn.export.c import STACK_RESERVE, arena_layout, build_host, export_c, parse_detections, write_ppm
from openmtcnn.models import create_model

needs_gcc = pytest.mark.skipif(shutil.which("gcc") is None, reason="gcc not found")
CAMERA = (160, 120)
REPO = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("OPENMTCNN_DATA", REPO.parent / "shared" / "data"))


def mcu_nets(seed: int = 0) -> dict:
    """Randomly initialised mcu nets whose face logits spread around the thresholds (so every stage passes some)."""
    torch.manual_seed(seed)
    nets = {s: create_model(f"{s}-mcu").eval() for s in ("pnet", "rnet", "onet")}
    with torch.no_grad():
        for net in nets.values():
            net.heads.cls.weight.mul_(30)
            net.heads.cls.bias.copy_(torch.tensor([0.0, 1.5]))
    return nets


def synthetic_frame(seed: int = 0) -> np.ndarray:
    """A camera frame of smooth gradients and bright and dark discs."""
    rng = np.random.default_rng(seed)
    h, w = CAMERA[1], CAMERA[0]
    y, x = np.mgrid[:h, :w]
    frame = np.stack([x * 255 / w, y * 255 / h, (x + y) * 255 / (w + h)], axis=2)
    for _ in range(6):
        cx, cy, r = rng.integers(0, w), rng.integers(0, h), rng.integers(6, 30)
        frame[(x - cx) ** 2 + (y - cy) ** 2 < r * r] = rng.integers(0, 256, 3)
    return frame.astype(np.uint8)


@pytest.fixture(scope="module")
def nets():
    torch.set_num_threads(1)
    return mcu_nets()


@pytest.fixture(scope="module")
def photos(_astronaut_rgb) -> list[np.ndarray]:
    """The sample photo, plus three WIDER FACE val photos when the shared data is there, as camera frames."""
    frames = [fit_camera(_astronaut_rgb, *CAMERA, cover=True)[0]]
    val = DATA / "widerface" / "WIDER_val" / "images"
    if val.is_dir():
        import cv2

        for path in sorted(val.glob("*/*.jpg"))[:3]:
            frames.append(fit_camera(cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB), *CAMERA)[0])
    return frames


@pytest.fixture(scope="module")
def cascade(nets, photos) -> Int8MTCNN:
    return quantize_cascade(nets, photos[:1] + [synthetic_frame(1)])


@pytest.fixture(scope="module")
def host(cascade, tmp_path_factory) -> Path:
    if shutil.which("gcc") is None:
        pytest.skip("gcc not found")
    out = tmp_path_factory.mktemp("c")
    export_c(cascade, out, *CAMERA, target="cortex-m4", info={"weights": "random"})
    return build_host(out)


def run_host(exe: Path, *args) -> str:
    return subprocess.run([str(exe), *map(str, args)], check=True, capture_output=True, text=True).stdout


def c_net(exe: Path, stage: str, x: np.ndarray, tmp: Path) -> np.ndarray:
    x.tofile(tmp / "in.bin")
    dims = [x.shape[1], x.shape[0]] if stage == "pnet" else [len(x)]
    run_host(exe, f"--{stage}", tmp / "in.bin", *dims, tmp / "out.bin")
    return np.fromfile(tmp / "out.bin", np.int32)


def c_detect(exe: Path, frames: list[np.ndarray], tmp: Path) -> list[dict]:
    paths = [write_ppm(tmp / f"frame{i}.ppm", f) for i, f in enumerate(frames)]
    found = parse_detections(run_host(exe, *paths))
    return [found[str(p)] for p in paths]


def assert_same_detections(c: dict, py: dict) -> None:
    for key in ("boxes", "logits", "landmarks"):
        np.testing.assert_array_equal(c[key], py[key], err_msg=key)
    scores = 1 / (1 + np.exp(-py["logits"] / 4096))
    np.testing.assert_allclose(c["scores"], scores, atol=2e-6)


# ---- the integer arithmetic -------------------------------------------------------------------

def test_requantisation_matches_real_multiplier():
    rng = np.random.default_rng(0)
    for real in [1e-6, 3.1e-3, 0.37, 0.999, 1.7, 100.0]:
        m, s = int8.quantize_multiplier(real)
        assert 1 <= s <= 62 and 0 < m < 2**31
        acc = rng.integers(-2**24, 2**24, 1000)
        got = int8.requantize(acc, np.array([m]), np.array([s]))
        assert np.abs(got - acc * real).max() <= 0.5 + 2**24 * real * 2**-30


def test_resample_is_exact_area_average():
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (30, 40, 3), dtype=np.uint8)
    whole = np.array([[0, 0, 40 * 16, 30 * 16]])
    np.testing.assert_array_equal(resample(img, whole, 40, 30)[0], img)
    np.testing.assert_array_equal(resample(img, whole, 20, 15)[0],
                                  np.floor(img.reshape(15, 2, 20, 2, 3).mean(axis=(1, 3)) + 0.5).astype(np.uint8))
    outside = resample(img, np.array([[-40 * 16, 0, 0, 30 * 16]]), 8, 8)  # entirely left of the image
    assert not outside.any()
    np.testing.assert_array_equal(bilinear(img, np.array([[16, 32, 16 + 24 * 16, 32 + 24 * 16]]), 24)[0],
                                  img[2:26, 1:25])  # pixel centres on pixel centres
    half = bilinear(img, np.array([[8, 0, 8 + 16 * 16, 16 * 16]]), 16)[0]  # half a pixel right: mean of neighbours
    np.testing.assert_array_equal(half[:, :15], ((img[:16, :15].astype(int) + img[:16, 1:16] + 1) // 2))


def test_integer_nms_matches_greedy():
    rng = np.random.default_rng(0)
    xy = rng.integers(0, 800, (200, 2))
    boxes = np.hstack([xy, xy + rng.integers(16, 400, (200, 2))])
    keys, seqs = rng.integers(0, 50, 200), np.arange(200)
    kept = nms(boxes, keys, seqs, 512)
    order = np.lexsort((seqs, -keys))
    greedy = []
    for i in order:
        b = boxes[i]
        iw = np.minimum(b[2], boxes[greedy, 2]) - np.maximum(b[0], boxes[greedy, 0])
        ih = np.minimum(b[3], boxes[greedy, 3]) - np.maximum(b[1], boxes[greedy, 1])
        inter = np.maximum(iw, 0) * np.maximum(ih, 0)
        area = lambda a: (a[..., 2] - a[..., 0]) * (a[..., 3] - a[..., 1])
        if not (inter / (area(b) + area(boxes[greedy]) - inter) > 0.5).any():
            greedy.append(i)
    np.testing.assert_array_equal(kept, greedy)


def test_int8_nets_follow_the_float_nets(nets, cascade):
    rng = np.random.default_rng(3)
    for stage, size, tol in (("pnet", 40, 0.05), ("rnet", 24, 0.05), ("onet", 48, 0.05)):
        x = rng.integers(0, 256, (4, size, size, 3), dtype=np.uint8)
        prob, box, lmk = int8.predict(cascade.nets[stage], x)
        with torch.no_grad():
            logits, fbox, flmk = nets[stage](torch.from_numpy(x.transpose(0, 3, 1, 2).astype(np.float32)))
        fprob = torch.softmax(logits, 1)[:, 1].numpy()
        assert np.abs(prob - fprob).max() < tol, stage
        assert np.abs(box - fbox.numpy()).max() < tol, stage
        if stage == "onet":
            assert np.abs(lmk - flmk.numpy()).max() < tol


def test_nets_outside_the_mcu_family_are_refused():
    with pytest.raises(ValueError, match="relu"):
        int8.parse_net(create_model("pnet"), "pnet")  # PReLU


# ---- C against NumPy ----------------------------------------------------------------------------

@needs_gcc
def test_c_nets_equal_numpy_reference(host, cascade, tmp_path):
    rng = np.random.default_rng(1)
    for w, h in ((96, 72), (37, 23), (12, 12), (13, 51)):
        x = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        ref = int8.forward(cascade.nets["pnet"], x[None])[0]
        np.testing.assert_array_equal(c_net(host, "pnet", x, tmp_path).reshape(ref.shape), ref)
    for stage, size, outputs in (("rnet", 24, 5), ("onet", 48, 15)):
        x = rng.integers(0, 256, (32, size, size, 3), dtype=np.uint8)
        ref = int8.forward(cascade.nets[stage], x)
        np.testing.assert_array_equal(c_net(host, stage, x, tmp_path).reshape(-1, outputs), ref)


@needs_gcc
def test_c_cascade_equals_python_on_synthetic_frames(host, cascade, tmp_path):
    frames = [synthetic_frame(0), synthetic_frame(2), synthetic_frame(4)[:100, :150]]
    found = c_detect(host, frames, tmp_path)
    total = 0
    for frame, c in zip(frames, found):
        py = cascade.detect_raw(frame)
        assert_same_detections(c, py)
        total += len(py["boxes"])
    assert total > 0  # the comparison covered real detections


@needs_gcc
def test_c_cascade_equals_python_on_photos(host, cascade, photos, tmp_path):
    for frame, c in zip(photos, c_detect(host, photos, tmp_path)):
        assert_same_detections(c, cascade.detect_raw(frame))


@needs_gcc
def test_shipped_mcu_weights_agree_in_c(photos, astronaut_face, tmp_path):
    try:
        nets = load_float_nets("mcu")
    except ValueError:
        pytest.skip("the mcu weight set is not installed")
    from openmtcnn import MTCNN
    from openmtcnn.detect.boxes import iou

    cascade = quantize_cascade(nets, photos[:1])
    export_c(cascade, tmp_path, *CAMERA, target="cortex-m4")
    exe = build_host(tmp_path)
    found = c_detect(exe, photos, tmp_path)
    for frame, c in zip(photos, found):
        assert_same_detections(c, cascade.detect_raw(frame))
    # the sample photo's face, as the float cascade of the same weights finds it
    face = astronaut_face * 0.3125 - [0, 20, 0, 20]  # the cover fit: scale 160 / 512, 20 rows cropped
    floating = MTCNN(weights="mcu", threads=1).detect(photos[0])
    best = found[0]["boxes"][0] / 16
    assert iou(face, best[None])[0] > 0.5
    assert iou(floating.boxes[0], best[None])[0] > 0.8
    assert abs(found[0]["scores"][0] - floating.scores[0]) < 0.02


# ---- memory -------------------------------------------------------------------------------------

@needs_gcc
def test_arena_fits_the_microcontroller(host, cascade):
    layout = arena_layout(cascade, *CAMERA)
    arena = layout["total"][1]
    assert arena + CAMERA[0] * CAMERA[1] * 3 + STACK_RESERVE <= 128 * 1024
    info = dict(line.split() for line in run_host(host, "--info").splitlines())
    assert int(info["arena_bytes"]) == arena
    with pytest.raises(ValueError, match="RAM"):  # a VGA frame alone is 900 KB
        export_c(cascade, host.parent / "vga", 640, 480, target="cortex-m4")


@needs_gcc
def test_oversized_frames_are_refused(host, tmp_path):
    path = write_ppm(tmp_path / "big.ppm", np.zeros((121, 160, 3), np.uint8))
    assert subprocess.run([str(host), str(path)], check=False, capture_output=True).returncode == 1


def test_cli_exports_a_weight_set(nets, tmp_path):
    from openmtcnn.cli.main import main
    from openmtcnn.weights import save_weight_set

    states = {s: {k: v.numpy() for k, v in n.state_dict().items()} for s, n in nets.items()}
    save_weight_set(tmp_path / "w", states, {}, {"name": "w", "models": {s: f"{s}-mcu" for s in nets}})
    out = tmp_path / "c"
    assert main(["export", "c", "--variant", "mcu", "--weights", str(tmp_path / "w"), "--out", str(out),
                 "--input", "64x48", "--caps", "64", "32", "16", "4"]) == 0
    assert {"mtcnn.c", "mtcnn.h", "mtcnn_model.c", "mtcnn_model.h", "main.c", "mcu_main.c", "Makefile"} <= {
        p.name for p in out.iterdir()}
    loaded = Int8MTCNN.load(out / "mtcnn_int8.npz")
    assert loaded.config == CascadeConfig(level_cap=64, proposal_cap=32, rnet_cap=16, onet_cap=4)
    assert main(["export", "c", "--weights", str(tmp_path / "w"), "--out", str(out), "--input", "8x8"]) == 2
