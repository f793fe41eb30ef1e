"""Box operations of the cascade (openmtcnn.detect.boxes) on hand-made cases."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from openmtcnn.detect import boxes as B


def f64(rows) -> np.ndarray:
    return np.asarray(rows, np.float64).reshape(-1, 4)


# ---- area / iou / iou_matrix -------------------------------------------------------------------

def test_area_uses_exclusive_convention_and_clamps_negative():
    np.testing.assert_array_equal(B.area(f64([[0, 0, 10, 5], [3, 3, 3, 9], [5, 5, 0, 0]])), [50, 0, 0])


def test_iou_known_values():
    box = np.array([0, 0, 10, 10], np.float64)
    others = f64([[0, 0, 10, 10],   # identical
                  [5, 0, 15, 10],   # half shifted: 50 / 150
                  [20, 20, 30, 30],  # disjoint
                  [0, 0, 5, 5],     # quarter inside: 25 / 100
                  [10, 0, 20, 10]])  # touching edge only
    np.testing.assert_allclose(B.iou(box, others), [1, 1 / 3, 0, 0.25, 0])
    # over the smaller area
    np.testing.assert_allclose(B.iou(box, others, mode="min"), [1, 0.5, 0, 1, 0])


def test_iou_matrix_known_values_and_consistency():
    a = f64([[0, 0, 10, 10], [5, 5, 15, 15]])
    b = f64([[0, 0, 10, 10], [10, 10, 20, 20], [0, 0, 20, 20]])
    m = B.iou_matrix(a, b)
    assert m.shape == (2, 3)
    np.testing.assert_allclose(m, [[1, 0, 0.25], [25 / 175, 25 / 175, 0.25]])
    np.testing.assert_allclose(B.iou_matrix(b, a), m.T)
    for i in range(len(a)):
        np.testing.assert_allclose(m[i], B.iou(a[i], b))
    assert B.iou_matrix(f64([]), b).shape == (0, 3)
    assert B.iou_matrix(a, f64([])).shape == (2, 0)


def test_iou_of_degenerate_boxes_is_finite():
    box = np.array([3, 3, 3, 3], np.float64)
    out = B.iou(box, f64([[3, 3, 3, 3], [0, 0, 10, 10]]))
    assert np.isfinite(out).all()
    np.testing.assert_array_equal(out, [0, 0])


# ---- nms ---------------------------------------------------------------------------------------

def test_nms_known_keep_set_best_first():
    boxes = f64([[0, 0, 10, 10],    # 0
                 [1, 0, 11, 10],    # 1: IoU with 0 = 90/110
                 [20, 20, 30, 30],  # 2: alone
                 [21, 21, 31, 31]])  # 3: IoU with 2 = 81/119
    scores = np.array([0.5, 0.9, 0.7, 0.8])
    keep = B.nms(boxes, scores, 0.5)
    assert keep.dtype == np.int64
    np.testing.assert_array_equal(keep, [1, 3])  # best first; 0 and 2 suppressed
    np.testing.assert_array_equal(B.nms(boxes, scores, 0.95), [1, 3, 2, 0])  # nothing overlaps that much


def test_nms_threshold_is_inclusive_for_keeping():
    """A box overlapping a kept one by exactly the threshold survives (suppression is IoU > t)."""
    boxes = f64([[0, 0, 10, 10], [0, 0, 10, 5]])  # IoU exactly 0.5
    scores = np.array([0.9, 0.8])
    np.testing.assert_array_equal(B.nms(boxes, scores, 0.5), [0, 1])
    np.testing.assert_array_equal(B.nms(boxes, scores, 0.49), [0])


def test_nms_min_mode_suppresses_nested_boxes():
    boxes = f64([[0, 0, 20, 20], [2, 2, 6, 6], [40, 40, 44, 44]])
    scores = np.array([0.9, 0.8, 0.7])
    np.testing.assert_array_equal(B.nms(boxes, scores, 0.5), [0, 1, 2])  # IoU 16/400
    np.testing.assert_array_equal(B.nms(boxes, scores, 0.5, mode="min"), [0, 2])  # 16/16


def test_nms_ties_keep_the_earlier_box_and_empty_input():
    boxes = f64([[0, 0, 10, 10], [0, 0, 10, 10]])
    np.testing.assert_array_equal(B.nms(boxes, np.array([0.5, 0.5]), 0.5), [0])
    keep = B.nms(f64([]), np.zeros(0), 0.5)
    assert keep.shape == (0,) and keep.dtype == np.int64


# ---- batched_nms -------------------------------------------------------------------------------

def test_batched_nms_keeps_groups_apart():
    boxes = f64([[0, 0, 10, 10], [0, 0, 10, 10], [1, 1, 11, 11], [50, 50, 60, 60]])
    scores = np.array([0.9, 0.8, 0.7, 0.6])
    groups = np.array([0, 1, 0, 1])
    keep = B.batched_nms(boxes, scores, groups, 0.5)
    np.testing.assert_array_equal(np.sort(keep), [0, 1, 3])  # 2 is suppressed by 0 in group 0
    # the same boxes in one group: only the best of the identical pair survives
    np.testing.assert_array_equal(np.sort(B.batched_nms(boxes, scores, np.zeros(4, int), 0.5)), [0, 3])
    empty = B.batched_nms(f64([]), np.zeros(0), np.zeros(0, int), 0.5)
    assert empty.shape == (0,)


@pytest.mark.parametrize("boxes", [
    [[-100, -100, 10, 10], [-100, -100, 10, 10]],  # partly negative (P-Net boxes near the border)
    [[-30, -30, -1, -1], [-30, -30, -1, -1]],      # wholly negative
], ids=["partly-negative", "all-negative"])
def test_batched_nms_keeps_groups_apart_with_negative_coordinates(boxes):
    """Identical boxes in different groups must both survive whatever their coordinates."""
    keep = B.batched_nms(f64(boxes), np.array([0.9, 0.8]), np.array([0, 1]), 0.5)
    np.testing.assert_array_equal(np.sort(keep), [0, 1])


# ---- regress / square / clip -------------------------------------------------------------------

def test_regress_in_units_of_width_and_height():
    boxes = f64([[10, 20, 30, 60], [0, 0, 12, 12]])
    offsets = np.array([[0.1, -0.1, 0.5, 0.25], [0, 0, 0, 0]])
    np.testing.assert_allclose(B.regress(boxes, offsets), [[12, 16, 40, 70], [0, 0, 12, 12]])


def test_square_keeps_centre_and_takes_longer_side():
    boxes = f64([[10, 20, 30, 60],   # tall: 20 x 40
                 [0, 0, 50, 10],     # wide: 50 x 10
                 [5, 5, 15, 15]])    # already square
    sq = B.square(boxes)
    np.testing.assert_allclose(sq, [[0, 20, 40, 60], [0, -20, 50, 30], [5, 5, 15, 15]])
    np.testing.assert_allclose((sq[:, :2] + sq[:, 2:]) / 2, (boxes[:, :2] + boxes[:, 2:]) / 2)
    np.testing.assert_allclose(sq[:, 2] - sq[:, 0], sq[:, 3] - sq[:, 1])


def test_clip_limits_to_image_and_keeps_dtype():
    boxes = np.array([[-5, 3, 120, 50], [10, -2, 20, 30]], np.float32)
    out = B.clip(boxes, 100, 40)
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out, [[0, 3, 100, 40], [10, 0, 20, 30]])


# ---- crop_resize -------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def image() -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (60, 80, 3), dtype=np.uint8)


def test_crop_resize_shape_dtype_and_empty(image):
    out = B.crop_resize(image, f64([[0, 0, 30, 30], [5, 5, 9, 9], [-4, -4, 100, 100]]), 24)
    assert out.shape == (3, 24, 24, 3) and out.dtype == np.float32
    empty = B.crop_resize(image, f64([]), 24)
    assert empty.shape == (0, 24, 24, 3) and empty.dtype == np.float32


def test_crop_resize_2x_downscale_is_block_mean(image):
    out = B.crop_resize(image, f64([[10, 5, 58, 53]]), 24)[0]
    blocks = image[5:53, 10:58].astype(np.float64).reshape(24, 2, 24, 2, 3).mean(axis=(1, 3))
    np.testing.assert_allclose(out, blocks, atol=1e-3)
    ref = cv2.resize(image[5:53, 10:58].astype(np.float32), (24, 24), interpolation=cv2.INTER_AREA)
    np.testing.assert_allclose(out, ref, atol=1e-3)


@pytest.mark.parametrize("x, y, w, h", [(3, 7, 37, 37), (3, 7, 50, 30), (0, 0, 80, 60), (20, 11, 24, 24)])
def test_crop_resize_matches_inter_area(image, x, y, w, h):
    region = image[y:y + h, x:x + w]
    out = B.crop_resize(image, f64([[x, y, x + w, y + h]]), 24)[0]
    ref = cv2.resize(region.astype(np.float32), (24, 24), interpolation=cv2.INTER_AREA)
    if w % 24 == 0 and h % 24 == 0:  # cell edges on whole pixels: exact
        np.testing.assert_allclose(out, ref, atol=1e-2)
    else:  # edges may move by 1/64 px (remap's sample grid): a bounded, small difference
        cell = min(w, h) / 24
        assert np.abs(out - ref).mean() < 1.0
        assert np.abs(out - ref).max() <= 255 * 2 / (64 * cell) * 2 + 1e-3
    if (w, h) == (24, 24):  # same size: an exact copy
        np.testing.assert_array_equal(out, region)


def test_crop_resize_outside_the_image_is_zero(image):
    # shrinking path: the top-left quarter of the box is the image, the rest is outside
    out = B.crop_resize(image, f64([[-24, -24, 24, 24]]), 24)[0]
    assert not out[:12].any() and not out[:, :12].any()
    expected = image[:24, :24].astype(np.float64).reshape(12, 2, 12, 2, 3).mean(axis=(1, 3))
    np.testing.assert_allclose(out[12:, 12:], expected, atol=1e-3)
    # off the bottom-right corner
    out = B.crop_resize(image, f64([[70, 50, 94, 74]]), 12)[0]
    assert not out[5:].any() and not out[:, 5:].any()
    expected = image[50:60, 70:80].astype(np.float64).reshape(5, 2, 5, 2, 3).mean(axis=(1, 3))
    np.testing.assert_allclose(out[:5, :5], expected, atol=1e-3)
    # entirely outside, big and small
    assert not B.crop_resize(image, f64([[200, 200, 260, 260], [200, 200, 210, 210]]), 24).any()


def test_crop_resize_upscaling_small_boxes(image):
    boxes = f64([[10.3, 5.7, 20.1, 15.9], [-5, -5, 5, 5], [75, 55, 85, 65], [30, 30, 32, 33]])
    out = B.crop_resize(image, boxes, 24)
    assert out.shape == (4, 24, 24, 3)
    assert out.min() >= 0 and out.max() <= 255
    # a box inside the image: bilinear at pixel centres, like cv2's INTER_LINEAR away from the border
    inner = B.crop_resize(image, f64([[10, 5, 20, 15]]), 24)[0]
    ref = cv2.resize(image[5:15, 10:20].astype(np.float32), (24, 24), interpolation=cv2.INTER_LINEAR)
    np.testing.assert_allclose(inner[2:-2, 2:-2], ref[2:-2, 2:-2], atol=1e-2)
    # partly outside: samples more than a pixel outside the image are zero
    corner = out[1]
    assert not corner[:10].any() and not corner[:, :10].any()
    assert corner[14:, 14:].min() >= 0 and corner[14:, 14:].any()


def test_crop_resize_of_constant_image_is_constant():
    img = np.full((40, 50, 3), 77, np.uint8)
    out = B.crop_resize(img, f64([[0, 0, 40, 40], [3.5, 2.25, 30.75, 38.5], [10, 10, 15, 15], [1.2, 3.4, 9.9, 8.1]]), 24)
    np.testing.assert_allclose(out, 77, atol=1e-3)
