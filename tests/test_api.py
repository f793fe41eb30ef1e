"""The public API: MTCNN.detect / detect_faces, image inputs, settings, align, weight sets."""
from __future__ import annotations

import io
import math
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
from _helpers import box_iou

from openmtcnn import KEYPOINTS, MTCNN, Detections, align, available_weights
from openmtcnn.detect.alignment import TEMPLATE_112, similarity_transform

KEYPOINT_NAMES = ("left_eye", "right_eye", "nose", "mouth_left", "mouth_right")


def assert_same(a: Detections, b: Detections) -> None:
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)


def assert_valid(d: Detections, height: int, width: int) -> None:
    """Shapes, dtypes and the invariants every result must have."""
    assert isinstance(d, Detections)
    n = len(d.boxes)
    assert d.boxes.shape == (n, 4) and d.scores.shape == (n,) and d.landmarks.shape == (n, 5, 2)
    assert d.boxes.dtype == d.scores.dtype == d.landmarks.dtype == np.float32
    assert np.isfinite(d.boxes).all() and np.isfinite(d.landmarks).all()
    assert ((d.scores > 0) & (d.scores <= 1)).all()
    assert (np.diff(d.scores) <= 0).all(), "best first"
    x1, y1, x2, y2 = d.boxes.T
    assert (x1 >= 0).all() and (y1 >= 0).all() and (x2 <= width).all() and (y2 <= height).all()
    assert (x2 > x1).all() and (y2 > y1).all()
    assert (d.landmarks[..., 0] >= 0).all() and (d.landmarks[..., 0] <= width).all()
    assert (d.landmarks[..., 1] >= 0).all() and (d.landmarks[..., 1] <= height).all()


def assert_empty(d: Detections) -> None:
    assert isinstance(d, Detections)
    assert d.boxes.shape == (0, 4) and d.scores.shape == (0,) and d.landmarks.shape == (0, 5, 2)
    assert d.boxes.dtype == d.scores.dtype == d.landmarks.dtype == np.float32


def png_bytes(rgb: np.ndarray) -> bytes:
    ok, buf = cv2.imencode(".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR) if rgb.ndim == 3 else rgb)
    assert ok
    return buf.tobytes()


# ---- detect_faces: the mtcnn-package style output ----------------------------------------------

def test_detect_faces_on_astronaut(detector, astronaut_path, astronaut_face):
    faces = detector.detect_faces(astronaut_path)
    assert isinstance(faces, list) and faces
    for f in faces:
        assert set(f) == {"box", "confidence", "keypoints"}
        box = f["box"]
        assert isinstance(box, list) and len(box) == 4 and all(type(v) is int for v in box)
        assert box[2] > 0 and box[3] > 0
        assert box[0] >= 0 and box[1] >= 0 and box[0] + box[2] <= 512 and box[1] + box[3] <= 512
        assert type(f["confidence"]) is float and 0 < f["confidence"] <= 1
        assert tuple(f["keypoints"]) == KEYPOINT_NAMES
        for p in f["keypoints"].values():
            assert isinstance(p, tuple) and len(p) == 2 and all(type(v) is int for v in p)
    conf = [f["confidence"] for f in faces]
    assert conf == sorted(conf, reverse=True)

    top = faces[0]
    x, y, w, h = top["box"]
    assert box_iou([x, y, x + w, y + h], astronaut_face) > 0.7
    assert top["confidence"] > 0.9
    k = top["keypoints"]
    assert k["left_eye"][0] < k["right_eye"][0]
    assert k["mouth_left"][0] < k["mouth_right"][0]
    assert max(k["left_eye"][1], k["right_eye"][1]) < min(k["mouth_left"][1], k["mouth_right"][1])
    assert k["left_eye"][1] < k["nose"][1] < k["mouth_left"][1]
    for px, py in k.values():  # the landmarks lie in the face
        assert x <= px <= x + w and y <= py <= y + h


def test_keypoints_constant():
    assert tuple(KEYPOINTS) == KEYPOINT_NAMES


def test_detect_faces_matches_detect(detector, astronaut, astronaut_detections):
    faces = detector.detect_faces(astronaut)
    d = astronaut_detections
    assert len(faces) == len(d.boxes)
    for f, b, s, pts in zip(faces, d.boxes, d.scores, d.landmarks):
        assert abs(f["box"][0] - b[0]) <= 0.5 and abs(f["box"][1] - b[1]) <= 0.5
        assert abs(f["box"][0] + f["box"][2] - b[2]) <= 0.5 and abs(f["box"][1] + f["box"][3] - b[3]) <= 0.5
        assert f["confidence"] == pytest.approx(float(s))
        for name, p in zip(KEYPOINT_NAMES, pts):
            assert abs(f["keypoints"][name][0] - p[0]) <= 0.5 and abs(f["keypoints"][name][1] - p[1]) <= 0.5


# ---- detect --------------------------------------------------------------------------------------

def test_detect_single_image(astronaut_detections, astronaut_face):
    d = astronaut_detections
    assert_valid(d, 512, 512)
    assert len(d.boxes) >= 1
    assert box_iou(d.boxes[0], astronaut_face) > 0.7
    le, re, nose, ml, mr = d.landmarks[0]
    assert le[0] < re[0] and ml[0] < mr[0]
    assert max(le[1], re[1]) < min(ml[1], mr[1])


def test_detect_list_of_images_of_different_sizes(detector, astronaut, astronaut_detections):
    small = np.ascontiguousarray(astronaut[40:300, 100:420])
    blank = np.zeros((90, 130, 3), np.uint8)
    out = detector.detect([astronaut, small, blank])
    assert isinstance(out, list) and len(out) == 3
    assert_same(out[0], astronaut_detections)
    assert_same(out[1], detector.detect(small))
    assert_valid(out[1], *small.shape[:2])
    assert len(out[1].boxes) >= 1
    assert_empty(out[2])
    # a tuple and a 4-D batch array are lists of images too
    tup = detector.detect((blank, astronaut))
    assert isinstance(tup, list) and len(tup) == 2
    assert_same(tup[1], astronaut_detections)
    batch = detector.detect(np.stack([astronaut, astronaut]))
    assert isinstance(batch, list) and len(batch) == 2
    assert_same(batch[0], astronaut_detections)
    assert_same(batch[1], astronaut_detections)
    assert detector.detect([]) == []


@pytest.mark.parametrize("image", [
    np.zeros((200, 200, 3), np.uint8),
    np.full((240, 320, 3), 128, np.uint8),
    np.full((64, 64), 255, np.uint8),
    np.zeros((5, 5, 3), np.uint8),
    np.zeros((1, 1, 3), np.uint8),
    np.zeros((12, 500, 3), np.uint8),
], ids=["black", "grey", "white-grey-2d", "5x5", "1x1", "12x500"])
def test_blank_and_tiny_images_give_empty_detections(detector, image):
    d = detector.detect(image)
    assert_empty(d)
    assert detector.detect_faces(image) == []


def test_tiny_crop_of_a_face_does_not_crash(detector, astronaut):
    tiny = cv2.resize(astronaut[58:175, 181:269], (9, 11), interpolation=cv2.INTER_AREA)
    assert_empty(detector.detect(tiny))


@pytest.mark.parametrize("crop", [
    (slice(None), slice(200, None)),   # face cut at the left edge
    (slice(90, None), slice(None)),    # cut at the top (eyes near the edge)
    (slice(85, None), slice(195, None)),  # both
    (slice(None), slice(None, 255)),   # cut at the right edge
    (slice(None, 160), slice(None)),   # chin cut at the bottom
], ids=["left", "top", "top-left", "right", "bottom"])
def test_boxes_stay_inside_the_image_for_a_face_at_the_border(detector, astronaut, crop):
    img = np.ascontiguousarray(astronaut[crop])
    d = detector.detect(img)
    assert len(d.boxes) >= 1, "the cut face should still be found"
    assert_valid(d, *img.shape[:2])
    for f in detector.detect_faces(img):
        x, y, w, h = f["box"]
        assert x >= 0 and y >= 0 and x + w <= img.shape[1] and y + h <= img.shape[0]


def test_determinism(detector, astronaut, astronaut_path):
    a = detector.detect(astronaut)
    b = detector.detect(astronaut.copy())
    assert_same(a, b)
    assert detector.detect_faces(astronaut_path) == detector.detect_faces(astronaut_path)
    other = MTCNN(device="cpu")
    assert_same(other.detect(astronaut), a)


def test_input_is_not_modified(detector, astronaut):
    before = astronaut.copy()
    detector.detect(astronaut)
    np.testing.assert_array_equal(astronaut, before)


def test_rescore_on_pnet_proposals_is_detect(detector, astronaut):
    """R-Net, O-Net and the final NMS on P-Net's own proposals: the whole cascade, bit for bit."""
    proposals = detector.run(astronaut, until="pnet")
    assert_same(detector.rescore(astronaut, proposals.boxes), detector.detect(astronaut))


def test_rescore_finds_the_face_near_a_shifted_box(detector, astronaut, astronaut_face):
    d = detector.rescore(astronaut, (astronaut_face + [10, -8, 10, -8])[None])
    assert_valid(d, *astronaut.shape[:2])
    assert len(d.boxes) == 1 and d.scores[0] > 0.9
    assert box_iou(d.boxes[0], astronaut_face) > 0.7


def test_rescore_without_boxes_or_with_bad_ones(detector, astronaut):
    assert_empty(detector.rescore(astronaut, np.zeros((0, 4))))
    assert_empty(detector.rescore(astronaut, [[0, 0, 30, 30]]))  # sky: R-Net turns it down
    with pytest.raises(ValueError, match="N x 4"):
        detector.rescore(astronaut, [[0, 0, 30]])
    with pytest.raises(ValueError, match="finite"):
        detector.rescore(astronaut, [[0, 0, np.nan, 30]])


# ---- every kind of input gives the same result for the same picture ----------------------------

def test_paths_bytes_and_pil_match_the_array(detector, astronaut, astronaut_path, astronaut_detections, tmp_path):
    ref = astronaut_detections
    assert_same(detector.detect(str(astronaut_path)), ref)
    assert_same(detector.detect(Path(astronaut_path)), ref)
    data = astronaut_path.read_bytes()
    assert_same(detector.detect(data), ref)
    assert_same(detector.detect(bytearray(data)), ref)
    assert_same(detector.detect(memoryview(data)), ref)
    assert_same(detector.detect(png_bytes(astronaut)), ref)
    # a lossless copy elsewhere, with spaces in the name and an upper-case suffix
    copy = tmp_path / "Copy Of Astronaut.PNG"
    copy.write_bytes(png_bytes(astronaut))
    assert_same(detector.detect(copy), ref)
    # non-contiguous arrays (a flipped view flipped back)
    assert_same(detector.detect(astronaut[:, ::-1][:, ::-1]), ref)


def test_pil_images_match_the_array(detector, astronaut, astronaut_detections):
    Image = pytest.importorskip("PIL.Image")
    assert_same(detector.detect(Image.fromarray(astronaut)), astronaut_detections)
    alpha = np.full(astronaut.shape[:2], 200, np.uint8)
    rgba = Image.fromarray(np.dstack([astronaut, alpha]))
    assert rgba.mode == "RGBA"
    assert_same(detector.detect(rgba), astronaut_detections)
    grey = cv2.cvtColor(astronaut, cv2.COLOR_RGB2GRAY)
    assert_same(detector.detect(Image.fromarray(grey)), detector.detect(np.dstack([grey] * 3)))
    buf = io.BytesIO()
    Image.fromarray(astronaut).save(buf, format="PNG")
    assert_same(detector.detect(buf.getvalue()), astronaut_detections)


def test_grey_and_alpha_arrays(detector, astronaut, astronaut_detections, tmp_path):
    grey = cv2.cvtColor(astronaut, cv2.COLOR_RGB2GRAY)
    grey_rgb = np.repeat(grey[:, :, None], 3, axis=2)
    ref = detector.detect(grey_rgb)
    assert len(ref.boxes) >= 1  # the face is found in grey too
    assert_same(detector.detect(grey), ref)
    assert_same(detector.detect(grey[:, :, None]), ref)
    path = tmp_path / "grey.png"
    path.write_bytes(png_bytes(grey))
    assert_same(detector.detect(path), ref)
    # RGBA: alpha is dropped, whatever it holds
    alpha = np.random.default_rng(0).integers(0, 256, grey.shape, dtype=np.uint8)
    assert_same(detector.detect(np.dstack([astronaut, alpha])), astronaut_detections)


# ---- errors --------------------------------------------------------------------------------------

@pytest.mark.parametrize("bad", [
    np.zeros((32, 32, 3), np.float32),
    np.zeros((32, 32, 3), np.float64),
    np.zeros((32, 32), np.uint16),
    np.zeros((32, 32, 3), bool),
], ids=["float32", "float64", "uint16", "bool"])
def test_non_uint8_arrays_are_type_errors(detector, bad):
    with pytest.raises(TypeError):
        detector.detect(bad)
    with pytest.raises(TypeError):
        detector.detect_faces(bad)


@pytest.mark.parametrize("bad", [
    np.zeros((32, 32, 2), np.uint8),
    np.zeros((32, 32, 5), np.uint8),
    np.zeros(100, np.uint8),
    np.zeros((1, 32, 32, 3), np.uint8),
    np.zeros((32, 32, 3, 1, 1), np.uint8),
    np.zeros((0, 10, 3), np.uint8),
    np.zeros((10, 0, 3), np.uint8),
    np.zeros((0, 0), np.uint8),
    np.zeros(0, np.uint8),
], ids=["2ch", "5ch", "1d", "4d-single", "5d", "empty-rows", "empty-cols", "empty-2d", "empty-1d"])
def test_bad_array_shapes_are_value_errors(detector, bad):
    with pytest.raises(ValueError):
        detector.detect_faces(bad)
    if bad.ndim != 4:
        with pytest.raises(ValueError):
            detector.detect(bad)


def test_4d_batch_with_wrong_image_shape(detector):
    with pytest.raises(ValueError):
        detector.detect(np.zeros((2, 32, 32, 2), np.uint8))
    with pytest.raises(ValueError):
        detector.detect(np.zeros((2, 0, 32, 3), np.uint8))


def test_missing_path(detector, tmp_path):
    with pytest.raises(FileNotFoundError):
        detector.detect(tmp_path / "nope.png")
    with pytest.raises(FileNotFoundError):
        detector.detect_faces(str(tmp_path / "nope.jpg"))


def test_undecodable_inputs_are_value_errors(detector, tmp_path):
    with pytest.raises(ValueError):
        detector.detect(b"this is not an image at all")
    with pytest.raises(ValueError):
        detector.detect(b"")
    with pytest.raises(ValueError):
        detector.detect(b"\x89PNG\r\n\x1a\n" + b"\0" * 64)  # a PNG header and nothing else
    text = tmp_path / "notes.txt"
    text.write_text("hello\n")
    with pytest.raises(ValueError):
        detector.detect(text)
    fake = tmp_path / "corrupt.jpg"
    fake.write_bytes(b"\xff\xd8\xff" + b"garbage" * 10)
    with pytest.raises(ValueError):
        detector.detect_faces(fake)


@pytest.mark.parametrize("bad", [3, 2.5, None, {"image": 1}, object()], ids=["int", "float", "none", "dict", "object"])
def test_unsupported_types_are_type_errors(detector, bad):
    with pytest.raises(TypeError):
        detector.detect(bad)
    with pytest.raises(TypeError):
        detector.detect_faces(bad)


def test_a_bad_item_in_a_list_raises(detector, astronaut):
    with pytest.raises(TypeError):
        detector.detect([astronaut, 7])


@pytest.mark.parametrize("settings", [
    {"scale_factor": 1.5}, {"scale_factor": 1.0}, {"scale_factor": 0}, {"scale_factor": -0.5},
    {"scale_factor": math.nan},
    {"thresholds": (0.6, 0.7)}, {"thresholds": (0.6, 0.7, 0.7, 0.7)}, {"thresholds": (0.6, 0.7, 1.5)},
    {"thresholds": (-0.1, 0.7, 0.7)}, {"thresholds": (0.6, math.nan, 0.7)},
    {"min_face_size": 0}, {"min_face_size": -20}, {"min_face_size": 0.5}, {"min_face_size": math.nan},
], ids=lambda s: "-".join(f"{k}={v}" for k, v in s.items()))
def test_bad_settings_are_value_errors(settings):
    with pytest.raises(ValueError):
        MTCNN(**settings)


def test_numpy_scalar_settings_are_accepted(astronaut, astronaut_face):
    """Settings computed with NumPy (np.int64, np.float32) are numbers like any other."""
    d = MTCNN(min_face_size=np.int64(40), scale_factor=np.float32(0.709),
              thresholds=np.array([0.6, 0.7, 0.7])).detect(astronaut)
    assert len(d.boxes) >= 1 and box_iou(d.boxes[0], astronaut_face) > 0.7


@pytest.mark.parametrize("nms", [(0.5,), (0.5, 0.7, 0.7)], ids=["one", "three"])
def test_bad_nms_thresholds_are_value_errors(nms):
    """Four NMS thresholds are needed; fewer must fail at construction, not with an
    IndexError in the middle of the first detection."""
    with pytest.raises(ValueError):
        MTCNN(nms_thresholds=nms)


def test_pyramid_scales():
    from openmtcnn.detect import pyramid_scales

    # 12 / 20 = 0.6: min side 60, 30, 15 pass; 7.5 < 12 stops
    np.testing.assert_allclose(pyramid_scales(100, 200, 20, 0.5), [0.6, 0.3, 0.15])
    assert pyramid_scales(10, 500, 20, 0.709) == []
    scales = pyramid_scales(512, 512, 20, 0.709)
    assert scales[0] == pytest.approx(0.6)
    np.testing.assert_allclose(np.diff(np.log(scales)), np.log(0.709))
    assert 512 * scales[-1] >= 12 > 512 * scales[-1] * 0.709


def test_unknown_weights_and_backend():
    with pytest.raises(ValueError, match="unknown weights"):
        MTCNN(weights="no-such-weights")
    with pytest.raises(ValueError):
        MTCNN(backend="tensorflow")
    with pytest.raises(ValueError):
        MTCNN(device="tpu")


def test_settings_change_results(detector, astronaut, astronaut_detections, astronaut_face):
    # an O-Net threshold nothing can pass: no faces
    assert_empty(MTCNN(thresholds=(0.6, 0.7, 1.0)).detect(astronaut))
    # a large minimum face size still finds the big face, and no face far smaller than asked
    big = MTCNN(min_face_size=60).detect(astronaut)
    assert len(big.boxes) >= 1 and box_iou(big.boxes[0], astronaut_face) > 0.7
    sides = np.maximum(big.boxes[:, 2] - big.boxes[:, 0], big.boxes[:, 3] - big.boxes[:, 1])
    assert (sides >= 40).all()
    # nothing in the picture is a face of 300 px or more
    assert_empty(MTCNN(min_face_size=300).detect(astronaut))


# ---- weights -------------------------------------------------------------------------------------

def test_available_weights():
    names = available_weights()
    assert isinstance(names, list) and "published" in names
    assert names == sorted(names)


def test_weight_set_by_folder_and_by_env(tmp_path, monkeypatch, astronaut, astronaut_detections):
    from openmtcnn import weights as store

    mine = tmp_path / "sets" / "mine"
    shutil.copytree(store.weights_dir("published"), mine)
    assert_same(MTCNN(weights=str(mine), device="cpu").detect(astronaut), astronaut_detections)
    monkeypatch.setenv("OPENMTCNN_WEIGHTS", str(tmp_path / "sets"))
    assert "mine" in available_weights() and "published" in available_weights()
    assert_same(MTCNN(weights="mine", device="cpu").detect(astronaut), astronaut_detections)


# ---- align ---------------------------------------------------------------------------------------

def test_align_shapes(astronaut, astronaut_detections):
    pts = astronaut_detections.landmarks
    one = align(astronaut, pts[0])
    assert one.shape == (112, 112, 3) and one.dtype == np.uint8
    many = align(astronaut, pts)
    assert many.shape == (len(pts), 112, 112, 3) and many.dtype == np.uint8
    np.testing.assert_array_equal(many[0], one)
    two = align(astronaut, np.stack([pts[0], pts[0]]), size=224)
    assert two.shape == (2, 224, 224, 3)
    none = align(astronaut, np.zeros((0, 5, 2)))
    assert none.shape == (0, 112, 112, 3) and none.dtype == np.uint8


def test_align_bad_arguments(astronaut):
    with pytest.raises(ValueError):
        align(astronaut, np.zeros((4, 2)))
    with pytest.raises(ValueError):
        align(astronaut, np.zeros((2, 5, 3)))
    with pytest.raises(ValueError):
        align(astronaut, TEMPLATE_112, size=0)
    with pytest.raises(TypeError):
        align(astronaut.astype(np.float32), TEMPLATE_112)


def test_align_accepts_a_numpy_integer_size(astronaut, astronaut_detections):
    crop = align(astronaut, astronaut_detections.landmarks[0], size=np.int64(96))
    assert crop.shape == (96, 96, 3)


def test_align_with_template_landmarks_is_identity():
    img = np.random.default_rng(0).integers(0, 256, (112, 112, 3), dtype=np.uint8)
    np.testing.assert_array_equal(align(img, TEMPLATE_112), img)


def _similarity(points: np.ndarray, scale: float, angle: float, shift, mirror: bool = False) -> np.ndarray:
    c, s = math.cos(angle), math.sin(angle)
    rot = np.array([[c, -s], [s, c]]) * scale
    pts = points * [-1, 1] if mirror else points
    return pts @ rot.T + np.asarray(shift)


@pytest.mark.parametrize("scale, angle, shift", [(2.5, 0.5, (40, -7)), (0.3, -2.0, (300, 120)), (1.0, 0.0, (0, 0))])
def test_similarity_transform_is_exact_for_a_similarity(scale, angle, shift):
    src = _similarity(TEMPLATE_112, scale, angle, shift)
    m = similarity_transform(src, TEMPLATE_112)
    assert m.shape == (2, 3)
    mapped = np.c_[src, np.ones(5)] @ m.T
    np.testing.assert_allclose(mapped, TEMPLATE_112, atol=1e-9)
    a, b = m[0, 0], m[1, 0]  # [[a, -b], [b, a]]: rotation and uniform scale only
    np.testing.assert_allclose(m[:, :2], [[a, -b], [b, a]], atol=1e-12)
    assert math.hypot(a, b) == pytest.approx(1 / scale)


def test_similarity_transform_never_reflects():
    src = _similarity(TEMPLATE_112, 1.7, 0.3, (5, 9), mirror=True)
    m = similarity_transform(src, TEMPLATE_112)
    assert np.linalg.det(m[:, :2]) > 0


def test_aligned_astronaut_face_has_eyes_at_the_template(detector, astronaut, astronaut_detections):
    pts = astronaut_detections.landmarks[0].astype(np.float64)
    m = similarity_transform(pts, TEMPLATE_112)
    mapped = np.c_[pts, np.ones(5)] @ m.T
    np.testing.assert_allclose(mapped[:2], TEMPLATE_112[:2], atol=6)  # eyes
    crop = align(astronaut, pts)
    again = detector.detect(crop)
    assert len(again.boxes) >= 1, "the aligned crop is still a face"
    eyes = again.landmarks[0, :2]
    assert np.abs(eyes - TEMPLATE_112[:2]).max() < 8
    assert eyes[0, 0] < eyes[1, 0]


def test_align_accepts_any_image_input(astronaut, astronaut_path, astronaut_detections):
    pts = astronaut_detections.landmarks[0]
    np.testing.assert_array_equal(align(astronaut_path, pts), align(astronaut, pts))


# ---- package layout ------------------------------------------------------------------------------

@pytest.mark.parametrize("module, attr", [("openmtcnn.detect.boxes", "nms"),
                                          ("openmtcnn.detect.cascade", "pyramid_scales"),
                                          ("openmtcnn.detect.alignment", "similarity_transform")])
def test_module_paths_resolve_to_modules(module, attr):
    """``import openmtcnn.detect.X as M`` and attribute access give the module, not a function
    re-exported under the same name (which would shadow the submodule)."""
    ns: dict = {}
    exec(f"import {module} as M", ns)
    assert hasattr(ns["M"], attr), f"{module} resolves to {ns['M']!r}, not the module"
