"""Landmark evaluation: metrics on hand-made points, list readers, matching, end to end, real data."""
from __future__ import annotations

import json
import math

import cv2
import numpy as np
import pytest

from openmtcnn.detect import KEYPOINTS, Detections
from openmtcnn.evaluate import landmarks as L

# Eyes 40 px apart: a shift of (3, 4) = 5 px is an error of 5 / 40 = 0.125.
FACE = np.array([[40, 50], [80, 50], [60, 65], [45, 80], [75, 80]], np.float64)


def cnn_line(name, box, pts) -> str:
    return " ".join([name, *map(str, box), *(f"{v:.2f}" for v in np.ravel(pts))])


# ---- metrics -------------------------------------------------------------------------------------

def test_keypoint_order_matches_detector():
    assert L.KEYPOINTS == KEYPOINTS


def test_exact_prediction_has_zero_error():
    gt = np.stack([FACE, FACE * 1.5])
    assert np.all(L.point_errors(gt, gt) == 0)
    np.testing.assert_array_equal(L.nme(gt, gt), [0, 0])


def test_constant_shift_is_d_over_interocular():
    gt = np.stack([FACE, FACE * 2])  # inter-ocular 40 and 80
    np.testing.assert_allclose(L.interocular(gt), [40, 80])
    pred = gt + [3.0, 4.0]
    np.testing.assert_allclose(L.point_errors(pred, gt), [[5 / 40] * 5, [5 / 80] * 5])
    np.testing.assert_allclose(L.nme(pred, gt), [0.125, 0.0625])


def test_per_point_errors_and_mean():
    pred = FACE.copy()
    pred[2] += [0, 8]    # nose 8 px off -> 0.2
    pred[4] += [-6, 0]   # right mouth corner 6 px off -> 0.15
    err = L.point_errors(pred[None], FACE[None])[0]
    np.testing.assert_allclose(err, [0, 0, 0.2, 0, 0.15])
    assert L.nme(pred[None], FACE[None])[0] == pytest.approx(0.07)


def test_metric_input_errors():
    with pytest.raises(ValueError, match="5, 2"):
        L.point_errors(np.zeros((2, 5, 2)), np.zeros((2, 4, 2)))
    with pytest.raises(ValueError, match="inter-ocular"):
        L.point_errors(np.zeros((1, 5, 2)), np.zeros((1, 5, 2)))
    with pytest.raises(ValueError, match="NaN"):
        L.failure_rate([0.1, np.nan])


def test_failure_rates_and_mean_with_misses():
    errors = np.array([0.02, 0.1, 0.11, 0.5, np.inf])  # 0.1 itself is not a failure; inf is a miss
    assert L.failure_rate(errors[:4]) == pytest.approx(2 / 4)
    assert L.failure_rate(errors) == pytest.approx(3 / 5)
    assert L.mean_nme(errors) == pytest.approx((0.02 + 0.1 + 0.11 + 0.5) / 4)
    assert math.isnan(L.failure_rate([])) and math.isnan(L.mean_nme([np.inf]))


def test_ced_monotone_reaches_one_and_auc():
    rng = np.random.default_rng(0)
    errors = rng.uniform(0, 0.19, 500)
    x, y = L.ced(errors, 0.2, steps=101)
    assert x[0] == 0 and x[-1] == pytest.approx(0.2)
    assert np.all(np.diff(y) >= 0) and y[-1] == 1.0
    assert L.ced_auc(np.zeros(3)) == 1.0
    assert L.ced_auc([0.1]) == pytest.approx(0.5)
    assert L.ced_auc([0.05, 0.3, np.inf]) == pytest.approx(0.75 / 3)
    # the exact AUC agrees with the area under a finely sampled curve
    x, y = L.ced(errors, 0.2, steps=20001)
    assert L.ced_auc(errors) == pytest.approx(np.trapezoid(y, x) / 0.2, abs=1e-3)
    # misses keep the curve below 1
    assert L.ced([0.0, np.inf])[1][-1] == 0.5


def test_summarise_counts():
    per_point = np.array([[0.0] * 5, [0.2] * 5, [0.05, 0.05, 0.1, 0.1, 0.2]])
    s = L.summarise(per_point, missed=1)
    assert s["matched"] == 3 and s["missed"] == 1
    assert s["mean_nme"] == pytest.approx((0 + 0.2 + 0.1) / 3)
    assert s["nme_per_point"]["left_eye"] == pytest.approx(0.25 / 3)
    assert s["nme_per_point"]["mouth_right"] == pytest.approx(0.4 / 3)
    assert s["failure_rate"] == pytest.approx(1 / 3)
    assert s["failure_rate_incl_misses"] == pytest.approx(2 / 4)


# ---- readers -------------------------------------------------------------------------------------

def test_read_cnn_list_box_order(tmp_path):
    # left right top bottom = 42 117 40 115; read as x1 y1 x2 y2 this box would have x2 < x1
    f = tmp_path / "list.txt"
    f.write_text("# comment\n\n" + cnn_line("net\\a.jpg", (42, 117, 40, 115), FACE) + "\n")
    lst = L.read_landmark_list(f)
    assert lst.fmt == "cnn" and lst.paths == ["net/a.jpg"] and list(lst.lines) == [3]
    np.testing.assert_array_equal(lst.boxes, [[42, 40, 117, 115]])
    np.testing.assert_allclose(lst.points[0], FACE)


def test_read_plain_list_and_forced_format(tmp_path):
    f = tmp_path / "plain.txt"
    f.write_text("a.jpg " + " ".join(map(str, FACE.ravel())) + "\nb.jpg " + " ".join(map(str, (FACE + 1).ravel())))
    lst = L.read_landmark_list(f)
    assert lst.fmt == "plain" and lst.boxes is None and lst.points.shape == (2, 5, 2)
    np.testing.assert_allclose(lst.points[1], FACE + 1)
    with pytest.raises(ValueError, match=r"plain.txt:1: expected 15 fields"):
        L.read_landmark_list(f, fmt="cnn")
    with pytest.raises(ValueError, match="unknown"):
        L.read_landmark_list(f, fmt="xyz")
    with pytest.raises(FileNotFoundError):
        L.read_landmark_list(tmp_path / "nope.txt")


@pytest.mark.parametrize("bad, message", [
    ("c.jpg 1 2 3", "expected 15 fields"),
    ("c.jpg 42 117 40 115 " + "1 " * 9 + "x", "must be numbers"),
    ("c.jpg 117 42 40 115 " + " ".join(map(str, FACE.ravel())), "right > left"),
    ("c.jpg 42 117 40 115 " + "5 5 5 5 " + "1 " * 6, "coincide"),
    ("c.jpg 42 117 40 115 " + "nan " * 10, "finite"),
])
def test_malformed_line_names_file_and_line(tmp_path, bad, message):
    f = tmp_path / "bad.txt"
    f.write_text(cnn_line("a.jpg", (42, 117, 40, 115), FACE) + "\n\n" + bad + "\n")
    with pytest.raises(ValueError, match=rf"bad.txt:3: .*{message}"):
        L.read_landmark_list(f)


# ---- matching ------------------------------------------------------------------------------------

def test_box_iou_and_points_box():
    iou = L.box_iou(np.array([[0, 0, 10, 10]]), np.array([[0, 0, 10, 10], [5, 0, 15, 10], [20, 20, 30, 30]]))
    np.testing.assert_allclose(iou, [[1, 50 / 150, 0]])
    box = L.points_box(FACE[None], 2.0)[0]  # points span 40 x 30, centre (60, 65) -> 80 x 80 square
    np.testing.assert_allclose(box, [20, 25, 100, 105])


def test_match_with_boxes_picks_best_overlap():
    gt_box = np.array([[30, 40, 90, 100]], np.float64)
    dets = np.array([[200, 200, 260, 260],   # elsewhere
                     [40, 50, 100, 110],     # IoU 2500/4700
                     [31, 41, 91, 101],      # best
                     [30, 40, 50, 60]], np.float64)  # inside but small: IoU 1/9
    lm = np.zeros((4, 5, 2))
    assert L.match_faces(FACE[None], dets, lm, gt_box).tolist() == [2]
    assert L.match_faces(FACE[None], dets[[0, 3]], lm[:2], gt_box).tolist() == [-1]  # best IoU 0.11 < 0.3
    assert L.match_faces(FACE[None], np.zeros((0, 4)), np.zeros((0, 5, 2)), gt_box).tolist() == [-1]


def test_match_is_one_to_one():
    boxes = np.array([[0, 0, 60, 60], [70, 0, 130, 60]], np.float64)
    dets = np.array([[72, 0, 132, 60], [2, 0, 62, 60], [5, 0, 65, 60]], np.float64)
    pts = np.stack([FACE, FACE + [70, 0]])
    assert L.match_faces(pts, dets, np.zeros((3, 5, 2)), boxes).tolist() == [1, 0]


def test_match_without_boxes_iou_then_closest_landmarks():
    big = L.points_box(FACE[None])[0]
    dets = np.array([[300, 300, 400, 400], big + 2], np.float64)
    lm = np.stack([FACE + 300, FACE + 2])
    assert L.match_faces(FACE[None], dets, lm).tolist() == [1]
    # boxes far too large for IoU >= 0.3 but containing the face: closest landmarks win
    huge = np.array([[-500, -500, 700, 700], [-400, -400, 600, 600], [500, 500, 900, 900]], np.float64)
    lm = np.stack([FACE + 10, FACE + 1, FACE])  # the third is closest but its box misses the face
    assert L.match_faces(FACE[None], huge, lm).tolist() == [1]
    assert L.match_faces(FACE[None], huge[2:], lm[2:]).tolist() == [-1]


# ---- end to end ----------------------------------------------------------------------------------

class FakeDetector:
    """Returns preset detections, chosen by the grey level of the image."""

    def __init__(self, by_level: dict[int, list[tuple[np.ndarray, np.ndarray]]]):
        self.by_level, self.calls = by_level, 0

    def detect(self, image: np.ndarray) -> Detections:
        self.calls += 1
        faces = self.by_level.get(int(image[0, 0, 0]), [])
        if not faces:
            return Detections.empty()
        boxes = np.array([b for b, _ in faces], np.float32)
        lms = np.array([p for _, p in faces], np.float32)
        return Detections(boxes, np.linspace(0.99, 0.9, len(faces)).astype(np.float32), lms)


def make_set(tmp_path):
    """Three readable images (shifted, exact, no detection), one missing, one corrupt."""
    images = tmp_path / "images"
    (images / "sub").mkdir(parents=True)
    for name, level in (("a", 10), ("b", 20), ("c", 30)):
        cv2.imwrite(str(images / "sub" / f"{name}.png"), np.full((120, 120, 3), level, np.uint8))
    (images / "sub" / "e.png").write_bytes(b"not an image")
    box = (30, 90, 40, 100)  # left right top bottom -> x1 y1 x2 y2 = 30 40 90 100
    lines = [cnn_line(f"sub\\{n}.png", box, FACE) for n in "abcde"]
    lst = tmp_path / "list.txt"
    lst.write_text("\n".join(lines) + "\n")
    det = np.array([30, 40, 90, 100], np.float32)
    detector = FakeDetector({10: [(det + 200, FACE), (det + 1, FACE + [3, 4])],  # first one is elsewhere
                             20: [(det, FACE)]})
    return lst, images, detector


def test_run_landmarks_end_to_end(tmp_path):
    lst, images, detector = make_set(tmp_path)
    out = tmp_path / "out"
    r = L.run_landmarks(detector, lst, images, out, show_progress=False)
    assert detector.calls == 3
    # d is missing and e corrupt: both listed as failed, their faces missed, the rest scored
    assert (r["faces"], r["faces_evaluated"], r["matched"], r["missed"]) == (5, 3, 2, 3)
    assert r["failed"]["count"] == 2 and [u["image"] for u in r["failed"]["images"]] == ["sub/d.png", "sub/e.png"]
    assert "no such image file" in r["failed"]["images"][0]["error"]
    assert "could not decode" in r["failed"]["images"][1]["error"]
    assert [m["line"] for m in r["missed_faces"]] == [3, 4, 5]
    assert r["mean_nme"] == pytest.approx(0.0625)
    assert r["nme_per_point"] == pytest.approx({k: 0.0625 for k in KEYPOINTS})
    assert r["failure_rate"] == pytest.approx(0.5)
    assert r["failure_rate_incl_misses"] == pytest.approx(4 / 5)
    assert r["auc"] == pytest.approx((0.075 + 0.2) / 2 / 0.2)
    assert r["nme_per_face"] == [0.125, 0.0, None, None, None]
    saved = json.loads((out / "results.json").read_text())
    assert saved["mean_nme"] == pytest.approx(0.0625) and "matched faces only" in saved["protocol"]["nme"]
    assert saved["failed"] == r["failed"]
    assert (out / "ced.png").stat().st_size > 1000
    assert "NME 6.25%" in L.summary(r) and "5 images, 2 images failed" in L.summary(r)
    np.testing.assert_array_equal(L.ced_errors(r), [0.125, 0.0, np.inf, np.inf, np.inf])


def test_run_landmarks_plain_format(tmp_path):
    images = tmp_path / "im"
    images.mkdir()
    cv2.imwrite(str(images / "p.png"), np.full((120, 120, 3), 10, np.uint8))
    lst = tmp_path / "plain.txt"
    lst.write_text("p.png " + " ".join(map(str, FACE.ravel())) + "\n")
    box = L.points_box(FACE[None])[0]
    detector = FakeDetector({10: [(box, FACE + [0, 4])]})
    r = L.run_landmarks(detector, lst, images, None, show_progress=False)
    assert r["format"] == "plain" and r["matched"] == 1 and r["mean_nme"] == pytest.approx(0.1)
    assert not (tmp_path / "runs").exists()


def test_compare_ced_writes_png(tmp_path):
    path = L.compare_ced({"a": np.array([0.01, 0.05, np.inf]), "b": np.array([0.02, 0.3]), "none": np.zeros(0)},
                         tmp_path / "cmp" / "ced.png")
    assert path is not None and path.stat().st_size > 1000


def test_cli_register_and_run(tmp_path, monkeypatch):
    from openmtcnn.cli import eval_landmarks
    from openmtcnn.cli.errors import UsageError
    from openmtcnn.cli.main import build_parser

    lst, images, detector = make_set(tmp_path)
    lst.write_text("\n".join(lst.read_text().splitlines()[:3]) + "\n")  # readable images only
    monkeypatch.setattr(eval_landmarks, "make_detector", lambda args: detector)
    parser = build_parser()
    args = parser.parse_args(["eval", "landmarks", "--list", str(lst), "--images", str(images),
                              "--out", str(tmp_path / "o"), "--format", "cnn", "--min-face", "12"])
    assert args.func(args) == 0
    saved = json.loads((tmp_path / "o" / "results.json").read_text())
    assert saved["settings"]["min_face"] == 12 and saved["missed"] == 1
    args = parser.parse_args(["eval", "landmarks", "--list", str(tmp_path / "no.txt"), "--images", str(images)])
    with pytest.raises(UsageError, match="--list"):
        args.func(args)
    args = parser.parse_args(["eval", "landmarks", "--list", str(lst), "--images", str(tmp_path / "none")])
    with pytest.raises(UsageError, match="--images"):
        args.func(args)


# ---- real data -----------------------------------------------------------------------------------

def test_real_mtcnn_on_cnn_facepoint(data_dir, detector, tmp_path):
    root = data_dir / "cnn_facepoint"
    if not (root / "testImageList.txt").is_file():
        pytest.skip(f"CNN_FacePoint not found under {root}")
    lst = tmp_path / "first20.txt"
    lst.write_text("\n".join((root / "testImageList.txt").read_text().splitlines()[:20]) + "\n")
    r = L.run_landmarks(detector, lst, root, tmp_path / "out", show_progress=False)
    assert r["faces"] == 20 and r["failed"]["count"] == 0 and r["matched"] >= 18
    assert math.isfinite(r["mean_nme"]) and r["mean_nme"] < 0.2
