"""Custom-dataset detection evaluation: hand-made cases with known answers, the three loaders, the CLI."""
from __future__ import annotations

import json
from unittest import mock

import cv2
import numpy as np
import pytest
from _helpers import box_iou

from openmtcnn.detect import Detections
from openmtcnn.evaluate.custom import (
    Sample,
    detection_metrics,
    from_arrays,
    load_arrays,
    load_coco,
    load_yolo,
    match_image,
    parse_labels,
    run_custom,
    summary,
    to_xyxy,
)
from openmtcnn.evaluate.loop import detect_all, failed_report

FACE_A, FACE_B = [10.0, 10.0, 50.0, 60.0], [100.0, 20.0, 140.0, 70.0]


def metrics(dets, faces, **kw) -> dict:
    """detection_metrics on one image: dets rows x1 y1 x2 y2 score."""
    d = np.asarray(dets, float).reshape(-1, 5)
    return detection_metrics([(d[:, :4], d[:, 4])], [np.asarray(faces, float).reshape(-1, 4)], **kw)


def reference_match(boxes, scores, gt, iou):
    """Textbook greedy loop (no don't-care faces): 1 for a true positive, 0 for a false one."""
    out, used = np.zeros(len(boxes), int), set()
    for i in sorted(range(len(boxes)), key=lambda k: -scores[k]):
        cands = [(box_iou(boxes[i], g), -j) for j, g in enumerate(gt) if j not in used]
        best = max(cands, default=(0.0, 0))
        if cands and best[0] >= iou:
            used.add(-best[1])
            out[i] = 1
    return out


# ---- metrics on hand-made cases ------------------------------------------------------------------

def test_perfect_detections():
    m = metrics([FACE_A + [0.9], FACE_B + [0.8]], [FACE_A, FACE_B])
    assert (m["tp"], m["fp"], m["fn"]) == (2, 0, 0)
    assert m["precision"] == m["recall"] == m["f1"] == m["ap"] == 1.0
    assert m["best_f1"] == {"threshold": pytest.approx(0.8), "precision": 1.0, "recall": 1.0, "f1": 1.0}


def test_false_positive_above_all_true_positives():
    # Ranked: FP (0.95), TP (0.9), TP (0.8). Curve points (R, P): (0, 0), (1/2, 1/2), (1, 2/3);
    # the precision envelope is 2/3 over all recall, so AP = 2/3.
    m = metrics([[300, 300, 340, 350, 0.95], FACE_A + [0.9], FACE_B + [0.8]], [FACE_A, FACE_B])
    assert (m["tp"], m["fp"], m["fn"]) == (2, 1, 0)
    assert m["ap"] == pytest.approx(2 / 3)
    assert m["precision"] == pytest.approx(2 / 3) and m["recall"] == 1.0 and m["f1"] == pytest.approx(0.8)
    np.testing.assert_allclose(m["curve"]["precision"], [0, 0.5, 2 / 3])
    np.testing.assert_allclose(m["curve"]["recall"], [0, 0.5, 1])
    assert m["best_f1"]["threshold"] == pytest.approx(0.8) and m["best_f1"]["f1"] == pytest.approx(0.8)


def test_fp_between_true_positives_ap_by_hand():
    # TP (0.9), FP (0.85), TP (0.8): points (1/2, 1), (1/2, 1/2), (1, 2/3); AP = 1/2 * 1 + 1/2 * 2/3.
    m = metrics([FACE_A + [0.9], [300, 300, 340, 350, 0.85], FACE_B + [0.8]], [FACE_A, FACE_B])
    assert m["ap"] == pytest.approx(0.5 + 1 / 3)
    assert m["best_f1"]["threshold"] == pytest.approx(0.8)  # F1 0.8 beats 2/3 at 0.9


def test_duplicate_detection_is_one_tp_one_fp():
    m = metrics([FACE_A + [0.9], [11, 11, 51, 61, 0.7]], [FACE_A])
    assert (m["tp"], m["fp"], m["fn"]) == (1, 1, 0)
    assert m["per_image"][0] == {"faces": 1, "tp": 1, "fp": 1, "fn": 0, "ignored_detections": 0}
    outcome, det_of_gt = match_image(np.array([[11, 11, 51, 61], FACE_A]), np.array([0.7, 0.9]), np.array([FACE_A]))
    assert outcome.tolist() == [0, 1] and det_of_gt.tolist() == [1]  # the higher score takes the face


def test_missed_face_is_fn():
    m = metrics([FACE_A + [0.9]], [FACE_A, FACE_B])
    assert (m["tp"], m["fp"], m["fn"]) == (1, 0, 1)
    assert m["recall"] == 0.5 and m["precision"] == 1.0 and m["ap"] == 0.5


def test_iou_threshold_boundary():
    gt = [0, 0, 100, 100]
    # Box [0, 0, 100, h] inside the face: IoU = h / 100 exactly.
    assert metrics([[0, 0, 100, 49, 0.9]], [gt])["tp"] == 0
    assert metrics([[0, 0, 100, 51, 0.9]], [gt])["tp"] == 1
    assert metrics([[0, 0, 100, 50, 0.9]], [gt])["tp"] == 1  # >= threshold matches
    assert metrics([[0, 0, 100, 51, 0.9]], [gt], iou=0.52)["tp"] == 0


def test_crowd_box_is_dont_care():
    crowd = [200, 200, 400, 300]
    dets = [FACE_A + [0.9], [210, 210, 250, 260, 0.8], [220, 220, 260, 270, 0.75], [500, 500, 540, 550, 0.7]]
    m = detection_metrics([(np.array(dets)[:, :4], np.array(dets)[:, 4])], [np.array([FACE_A, crowd])],
                          ignore=[np.array([False, True])])
    # two detections inside the crowd are neither TP nor FP; the crowd is not a missed face
    assert (m["tp"], m["fp"], m["fn"], m["ignored_detections"]) == (1, 1, 0, 2)
    assert m["faces"] == 1 and m["ignored_faces"] == 1
    assert m["precision"] == 0.5 and m["ap"] == 1.0
    # a crowd never takes a detection from a counted face it also covers
    out, _ = match_image(np.array([FACE_A]), np.array([0.9]), np.array([[0, 0, 60, 70], FACE_A]),
                         np.array([True, False]))
    assert out.tolist() == [1]


def test_score_threshold_counts_and_empty_cases():
    dets = [FACE_A + [0.9], [300, 300, 340, 350, 0.6], FACE_B + [0.4]]
    m = metrics(dets, [FACE_A, FACE_B], score_threshold=0.5)
    assert (m["tp"], m["fp"], m["fn"], m["detections"]) == (1, 1, 1, 2)
    assert m["ap"] == metrics(dets, [FACE_A, FACE_B])["ap"]  # AP always uses every detection
    none = metrics([], [FACE_A])
    assert (none["tp"], none["fn"], none["ap"], none["f1"]) == (0, 1, 0.0, 0.0) and np.isnan(none["precision"])
    no_faces = metrics([FACE_A + [0.9]], [])
    assert no_faces["fp"] == 1 and np.isnan(no_faces["recall"]) and np.isnan(no_faces["ap"])


def test_tied_scores_do_not_depend_on_order():
    dets = np.array([FACE_A + [0.8], [300, 300, 340, 350, 0.8], FACE_B + [0.8]])
    a = metrics(dets, [FACE_A, FACE_B])
    b = metrics(dets[::-1], [FACE_A, FACE_B])
    assert a["ap"] == b["ap"] == pytest.approx(2 / 3) and len(a["curve"]["recall"]) == 1


def test_vectorised_matching_equals_textbook_loop():
    rng = np.random.default_rng(0)
    for trial in range(60):
        gt = rng.uniform(0, 60, (rng.integers(0, 8), 2))
        gt = np.hstack([gt, gt + rng.uniform(10, 30, (len(gt), 2))])
        picks = gt[rng.integers(0, max(len(gt), 1), 12)] if len(gt) else np.zeros((12, 4))
        dets = picks + rng.normal(0, 4, (12, 4))
        dets[:, 2:] = np.maximum(dets[:, 2:], dets[:, :2] + 1)
        scores = np.round(rng.random(12), 1)  # ties included
        got, det_of_gt = match_image(dets, scores, gt, iou=0.4)
        assert got.tolist() == reference_match(dets, scores, gt, 0.4).tolist(), trial
        assert sorted(det_of_gt[det_of_gt >= 0].tolist()) == np.nonzero(got == 1)[0].tolist()


def test_metric_input_errors():
    with pytest.raises(ValueError, match="2 predictions for 1"):
        detection_metrics([(np.zeros((0, 4)), np.zeros(0))] * 2, [np.zeros((0, 4))])
    with pytest.raises(ValueError, match="2 boxes but 1 scores"):
        detection_metrics([(np.zeros((2, 4)), np.zeros(1))], [np.zeros((0, 4))])
    with pytest.raises(ValueError, match=r"shape \(M, 4\)"):
        detection_metrics([(np.zeros((0, 4)), np.zeros(0))], [np.zeros((2, 3))])
    with pytest.raises(ValueError, match="IoU threshold"):
        metrics([], [], iou=1.5)


# ---- box formats and loaders ---------------------------------------------------------------------

def test_xywh_and_xyxy():
    np.testing.assert_array_equal(to_xyxy(np.array([[10, 20, 30, 40]]), "xywh"), [[10, 20, 40, 60]])
    np.testing.assert_array_equal(to_xyxy(np.array([[10, 20, 30, 40]]), "xyxy"), [[10, 20, 30, 40]])
    rows = np.array([[1, 10, 20, 30, 40], [0, 0, 0, 5, 5]])
    a, b = parse_labels(rows, 2, "xywh")
    np.testing.assert_array_equal(a, [[0, 0, 5, 5]])
    np.testing.assert_array_equal(b, [[10, 20, 40, 60]])
    with pytest.raises(ValueError, match="wrong --box-format"):  # xywh read as xyxy: x2 < x1
        parse_labels(np.array([[0, 50, 50, 20, 20]]), 1, "xyxy")
    with pytest.raises(ValueError, match="box format"):
        to_xyxy(np.zeros((1, 4)), "cxcywh")


def _images(n=2, grey=False):
    shape = (n, 16, 20) if grey else (n, 16, 20, 3)
    return np.arange(np.prod(shape), dtype=np.uint64).reshape(shape).astype(np.uint8)


def test_load_npy_object_labels_needs_allow_pickle(tmp_path):
    np.save(tmp_path / "images.npy", _images())
    labels = np.empty(2, object)
    labels[0], labels[1] = np.array([[1, 2, 5, 6], [0, 0, 3, 3]], float), np.zeros((0, 4))
    np.save(tmp_path / "labels.npy", labels, allow_pickle=True)
    with pytest.raises(ValueError, match="--allow-pickle") as e:
        load_arrays(tmp_path / "images.npy", tmp_path / "labels.npy")
    assert "labels.npy" in str(e.value)
    ds = load_arrays(tmp_path / "images.npy", tmp_path / "labels.npy", allow_pickle=True)
    assert len(ds) == 2 and ds[0].boxes.shape == (2, 4) and ds[1].boxes.shape == (0, 4)
    np.testing.assert_array_equal(ds[0].image, _images()[0])
    assert not ds[0].ignore.any() and ds[1].name == "image 1"


def test_load_npy_rows_grey_and_xywh(tmp_path):
    np.save(tmp_path / "images.npy", _images(3, grey=True))
    np.save(tmp_path / "rows.npy", np.array([[2, 1, 1, 4, 4], [0, 5, 5, 2, 3], [2, 0, 0, 1, 1]], float))
    ds = load_arrays(tmp_path / "images.npy", tmp_path / "rows.npy", box_format="xywh")
    assert [len(s.boxes) for s in ds] == [1, 0, 2]
    np.testing.assert_array_equal(ds[0].boxes, [[5, 5, 7, 8]])
    np.testing.assert_array_equal(ds[2].boxes, [[1, 1, 5, 5], [0, 0, 1, 1]])
    assert ds[0].image.shape == (16, 20)


def test_load_npz(tmp_path):
    np.savez(tmp_path / "data.npz", images=_images(2), boxes=np.array([[1, 2, 3, 8, 9]], float))
    ds = load_arrays(tmp_path / "data.npz")
    assert len(ds[0].boxes) == 0 and ds[1].boxes.tolist() == [[2, 3, 8, 9]]
    np.savez(tmp_path / "noboxes.npz", images=_images(2))
    with pytest.raises(ValueError, match="no 'boxes' array"):
        load_arrays(tmp_path / "noboxes.npz")


@pytest.mark.parametrize("labels, message", [
    (np.array([[5, 1, 1, 2, 2]], float), "image index 5"),
    (np.array([[0.5, 1, 1, 2, 2]], float), "image index 0.5"),
    (np.zeros((3, 4)), r"shape \(K, 5\)"),
    (np.zeros((3, 1, 4)), "boxes for 3 images, but there are 2"),
    (np.array([[0, 1, 1, np.nan, 2]]), "not a valid"),
])
def test_bad_npy_labels(tmp_path, labels, message):
    np.save(tmp_path / "images.npy", _images(2))
    np.save(tmp_path / "labels.npy", labels)
    with pytest.raises(ValueError, match=message) as e:
        load_arrays(tmp_path / "images.npy", tmp_path / "labels.npy")
    assert "labels.npy" in str(e.value)


def test_bad_npy_images_and_files(tmp_path):
    np.save(tmp_path / "labels.npy", np.zeros((0, 5)))
    np.save(tmp_path / "float.npy", np.zeros((2, 4, 4, 3), np.float32))
    with pytest.raises(ValueError, match="uint8"):
        load_arrays(tmp_path / "float.npy", tmp_path / "labels.npy")
    (tmp_path / "text.npy").write_text("not numpy")
    with pytest.raises(ValueError, match="text.npy: not a .npy"):
        load_arrays(tmp_path / "text.npy", tmp_path / "labels.npy")
    with pytest.raises(FileNotFoundError, match="missing.npy"):
        load_arrays(tmp_path / "missing.npy", tmp_path / "labels.npy")
    np.save(tmp_path / "images.npy", _images(1))
    with pytest.raises(ValueError, match="labels file is needed"):
        load_arrays(tmp_path / "images.npy")
    assert len(from_arrays(_images(1), [np.array([1, 1, 2, 2])])[0].boxes) == 1


def _coco(tmp_path, **extra) -> dict:
    data = {"images": [{"id": 7, "file_name": "a.png", "width": 64, "height": 48},
                       {"id": 9, "file_name": "b.png", "width": 64, "height": 48}],
            "annotations": [{"id": 1, "image_id": 7, "bbox": [10, 5, 20, 30], "category_id": 1, "iscrowd": 0},
                            {"id": 2, "image_id": 7, "bbox": [0, 0, 64, 10], "category_id": 1, "iscrowd": 1},
                            {"id": 3, "image_id": 9, "bbox": [1, 1, 4, 4], "category_id": 2},
                            {"id": 4, "image_id": 9, "bbox": [30, 20, 10, 10], "category_id": 1}],
            "categories": [{"id": 1, "name": "face"}, {"id": 2, "name": "person"}], **extra}
    (tmp_path / "ann.json").write_text(json.dumps(data))
    return data


def test_load_coco_category_filter_and_crowd(tmp_path):
    _coco(tmp_path)
    for cat in (["face"], [1], ["1"]):
        ds = load_coco(tmp_path / "ann.json", tmp_path, categories=cat)
        assert [s.name for s in ds] == ["a.png", "b.png"] and ds[0].image == tmp_path / "a.png"
        np.testing.assert_array_equal(ds[0].boxes, [[10, 5, 30, 35], [0, 0, 64, 10]])
        assert ds[0].ignore.tolist() == [False, True]
        np.testing.assert_array_equal(ds[1].boxes, [[30, 20, 40, 30]])
    assert [len(s.boxes) for s in load_coco(tmp_path / "ann.json", tmp_path)] == [2, 2]
    assert [len(s.boxes) for s in load_coco(tmp_path / "ann.json", tmp_path, ["person"])] == [0, 1]
    with pytest.raises(ValueError, match="no category 'cat'.*1: face"):
        load_coco(tmp_path / "ann.json", tmp_path, ["cat"])


@pytest.mark.parametrize("change, message", [
    (lambda d: d["annotations"][0].update(image_id=99), "image id 99"),
    (lambda d: d["annotations"][0].update(bbox=[1, 2, 3]), r"annotation 1 has bbox \[1, 2, 3\]"),
    (lambda d: d["annotations"][0].update(bbox=[1, 2, -3, 4]), "not a valid"),
    (lambda d: d.pop("images"), "not COCO format"),
    (lambda d: d["images"][1].pop("file_name"), "'file_name'"),
])
def test_bad_coco(tmp_path, change, message):
    data = _coco(tmp_path)
    change(data)
    (tmp_path / "ann.json").write_text(json.dumps(data))
    with pytest.raises(ValueError, match=message) as e:
        load_coco(tmp_path / "ann.json", tmp_path)
    assert "ann.json" in str(e.value)
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(ValueError, match="bad.json: not valid JSON"):
        load_coco(tmp_path / "bad.json", tmp_path)
    with pytest.raises(FileNotFoundError):
        load_coco(tmp_path / "none.json", tmp_path)


def test_load_yolo_normalised_and_class_filter(tmp_path):
    (tmp_path / "images" / "sub").mkdir(parents=True)
    (tmp_path / "labels" / "sub").mkdir(parents=True)
    cv2.imwrite(str(tmp_path / "images" / "sub" / "a.png"), np.zeros((50, 200, 3), np.uint8))  # 200 wide, 50 high
    cv2.imwrite(str(tmp_path / "images" / "b.jpg"), np.zeros((10, 10, 3), np.uint8))  # no label file: no faces
    (tmp_path / "labels" / "sub" / "a.txt").write_text("0 0.5 0.5 0.2 0.4\n\n1 0.1 0.1 0.1 0.2\n")
    ds = load_yolo(tmp_path / "images", tmp_path / "labels")
    assert [s.name for s in ds] == ["b.jpg", "sub/a.png"] and len(ds[0].boxes) == 0
    np.testing.assert_allclose(ds[1].boxes, [[80, 15, 120, 35], [10, 0, 30, 10]])
    only0 = load_yolo(tmp_path / "images", tmp_path / "labels", classes=[0])
    np.testing.assert_allclose(only0[1].boxes, [[80, 15, 120, 35]])


@pytest.mark.parametrize("text, message", [
    ("0 0.5 0.5 0.2\n", "a.txt:1: expected 'class cx cy w h'"),
    ("0 0.5 0.5 0.2 0.2\n0 50 50 20 20\n", "a.txt:2: .*normalised"),
    ("0 0.5 x 0.2 0.2\n", "a.txt:1: not a number"),
    ("0.5 0.5 0.5 0.2 0.2\n", "a.txt:1: class must be"),
])
def test_bad_yolo(tmp_path, text, message):
    (tmp_path / "images").mkdir()
    (tmp_path / "labels").mkdir()
    cv2.imwrite(str(tmp_path / "images" / "a.png"), np.zeros((8, 8, 3), np.uint8))
    (tmp_path / "labels" / "a.txt").write_text(text)
    with pytest.raises(ValueError, match=message):
        load_yolo(tmp_path / "images", tmp_path / "labels")
    with pytest.raises(FileNotFoundError, match="labels folder"):
        load_yolo(tmp_path / "images", tmp_path / "nope")


# ---- end to end ----------------------------------------------------------------------------------

class FakeDetector:
    """Returns fixed detections for images by their top-left pixel value (set in the test images)."""

    def __init__(self, by_pixel: dict[int, list]):
        self.by_pixel, self.calls = by_pixel, 0

    def detect(self, image) -> Detections:
        self.calls += 1
        rows = np.asarray(self.by_pixel.get(int(image[0, 0, 0]), []), np.float32).reshape(-1, 5)
        return Detections(rows[:, :4], rows[:, 4], np.zeros((len(rows), 5, 2), np.float32))


def test_run_custom_with_fake_detector(tmp_path):
    images = np.zeros((2, 80, 160, 3), np.uint8)
    images[1, 0, 0] = 1
    dataset = [Sample(images[0], np.array([FACE_A, FACE_B]), np.zeros(2, bool), "one"),
               (images[1], np.array([FACE_A])),  # a plain (image, boxes) pair works too
               (tmp_path / "missing.png", np.array([FACE_B]))]
    det = FakeDetector({0: [FACE_A + [0.9], [60, 60, 70, 70, 0.95]], 1: [FACE_A + [0.8]]})
    r = run_custom(det, dataset, tmp_path / "out", settings={"name": "fake"}, show_progress=False)
    assert det.calls == 2 and r["images"] == 3 and r["failed"]["count"] == 1
    assert r["failed"]["images"][0]["image"].endswith("missing.png")
    assert (r["tp"], r["fp"], r["fn"], r["faces"]) == (2, 1, 2, 4)  # the missing image's face is missed
    # ranked FP .95, TP .9, TP .8 over 4 faces: points (0, 0), (1/4, 1/2), (1/2, 2/3); AP = 1/2 * 2/3
    assert r["ap"] == pytest.approx(1 / 3)
    saved = json.loads((tmp_path / "out" / "results.json").read_text())
    assert saved["ap"] == pytest.approx(1 / 3, abs=1e-6) and saved["settings"] == {"name": "fake"}
    assert [p["image"] for p in saved["per_image"]] == ["one", "image 1", str(tmp_path / "missing.png")]
    assert saved["per_image"][0]["fn"] == 1 and saved["per_image"][2]["fn"] == 1
    assert "why_not_accuracy" in saved["protocol"]
    png = (tmp_path / "out" / "pr_curve.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(ValueError, match="no images"):
        run_custom(det, [], None)


def test_a_corrupt_image_fails_and_the_rest_is_scored(tmp_path):
    """The failure policy: a file that cannot be decoded is listed under "failed", adds no detections,
    its faces count as missed, and the run goes on to score the other images."""
    (tmp_path / "images").mkdir()
    cv2.imwrite(str(tmp_path / "images" / "good.png"), np.zeros((80, 160, 3), np.uint8))
    (tmp_path / "images" / "bad.jpg").write_bytes(np.random.default_rng(0).bytes(64))
    cv2.imwrite(str(tmp_path / "images" / "good2.png"), np.ones((80, 160, 3), np.uint8))
    ann = {"images": [{"id": i, "file_name": n} for i, n in enumerate(["good.png", "bad.jpg", "good2.png"])],
           "annotations": [{"id": i, "image_id": i, "bbox": [10, 10, 40, 50], "category_id": 1} for i in range(3)]}
    (tmp_path / "ann.json").write_text(json.dumps(ann))
    det = FakeDetector({0: [FACE_A + [0.9]], 1: [FACE_A + [0.8]]})
    r = run_custom(det, load_coco(tmp_path / "ann.json", tmp_path / "images"), tmp_path / "out", show_progress=False)
    assert det.calls == 2
    saved = json.loads((tmp_path / "out" / "results.json").read_text())
    assert saved["failed"]["count"] == 1 and [f["image"] for f in saved["failed"]["images"]] == ["bad.jpg"]
    assert "could not decode" in saved["failed"]["images"][0]["error"]
    assert (saved["images"], saved["faces"], saved["tp"], saved["fp"], saved["fn"]) == (3, 3, 2, 0, 1)
    assert saved["precision"] == 1.0 and saved["recall"] == pytest.approx(2 / 3)
    assert [p["fn"] for p in saved["per_image"]] == [0, 1, 0]
    assert "3 images, 1 image failed" in summary(r)


def test_detect_all_records_failures_and_goes_on(tmp_path):
    """The shared loop: unreadable inputs and OpenCV errors are yielded as failures, in order, never raised."""
    def detect(image):
        if image[0, 0, 0] == 7:
            raise cv2.error("resize failed")
        return image.shape

    items = [np.zeros((4, 6, 3), np.uint8), tmp_path / "none.png", np.full((5, 5, 3), 7, np.uint8), 3.5]
    out = list(detect_all(detect, items, lambda item: item, "test", show_progress=False))
    assert [o.found for o in out] == [(4, 6, 3), None, None, None] and out[0].size == (4, 6)
    assert "no such image file" in out[1].error and "resize failed" in out[2].error
    assert "unsupported image type" in out[3].error
    report = failed_report(out[1:], name=str)
    assert report["count"] == 3 and report["images"][0] == {"image": str(tmp_path / "none.png"),
                                                             "error": out[1].error}


def test_write_json_is_strict_json(tmp_path):
    """The one results.json writer: NumPy values become Python ones, NaN and inf null, floats rounded if asked."""
    from openmtcnn.fileio import write_json

    obj = {"a": np.float32(0.5), "b": [np.int64(3), np.nan, -np.inf], "c": np.array([[1.23456789, 2]]),
           "d": (np.bool_(True), None, "x")}
    path = write_json(tmp_path / "r.json", obj, digits=3)
    assert json.loads(path.read_text()) == {"a": 0.5, "b": [3, None, None], "c": [[1.235, 2.0]],
                                            "d": [True, None, "x"]}
    assert json.loads(write_json(tmp_path / "full.json", {"x": 1 / 3}).read_text()) == {"x": 1 / 3}


def test_real_mtcnn_on_astronaut_via_coco(tmp_path, detector, astronaut_path):
    ann = {"images": [{"id": 1, "file_name": astronaut_path.name}],
           "annotations": [{"id": 1, "image_id": 1, "bbox": [181, 58, 88, 117], "category_id": 1}],
           "categories": [{"id": 1, "name": "face"}]}
    (tmp_path / "ann.json").write_text(json.dumps(ann))
    ds = load_coco(tmp_path / "ann.json", astronaut_path.parent, ["face"])
    r = run_custom(detector, ds, tmp_path / "out", show_progress=False)
    assert (r["tp"], r["fn"]) == (1, 0) and r["recall"] == 1.0 and r["ap"] == 1.0
    assert r["fp"] == r["detections"] - 1


# ---- command line --------------------------------------------------------------------------------

def _cli(argv, det):
    from openmtcnn.cli import eval_custom
    from openmtcnn.cli.main import build_parser

    args = build_parser().parse_args(["eval", "custom", *argv])
    with mock.patch.object(eval_custom, "make_detector", lambda args: det):
        return args.func(args)


def test_cli_formats(tmp_path, capsys):
    det = FakeDetector({0: [[2, 2, 10, 10, 0.9]]})
    np.save(tmp_path / "images.npy", np.zeros((1, 20, 20, 3), np.uint8))
    np.save(tmp_path / "rows.npy", np.array([[0, 2, 2, 8, 8]], float))
    assert _cli(["--format", "npy", "--images", str(tmp_path / "images.npy"), "--labels", str(tmp_path / "rows.npy"),
                 "--box-format", "xywh", "--out", str(tmp_path / "npy")], det) == 0
    assert "AP 1.0000" in capsys.readouterr().out
    assert json.loads((tmp_path / "npy" / "results.json").read_text())["source"]["box_format"] == "xywh"

    cv2.imwrite(str(tmp_path / "a.png"), np.zeros((20, 20, 3), np.uint8))
    (tmp_path / "labels").mkdir()
    (tmp_path / "labels" / "a.txt").write_text("3 0.3 0.3 0.4 0.4\n")
    assert _cli(["--format", "yolo", "--images", str(tmp_path), "--labels", str(tmp_path / "labels"),
                 "--category", "3", "--iou", "0.6", "--out", str(tmp_path / "yolo")], det) == 0
    assert json.loads((tmp_path / "yolo" / "results.json").read_text())["tp"] == 1

    (tmp_path / "ann.json").write_text(json.dumps({"images": [{"id": 1, "file_name": "a.png"},
                                                              {"id": 2, "file_name": "gone.png"}],
                                                   "annotations": []}))
    assert _cli(["--format", "coco", "--images", str(tmp_path), "--labels", str(tmp_path / "ann.json"),
                 "--score-threshold", "0.5", "--out", str(tmp_path / "coco")], det) == 1  # unreadable image
    err = capsys.readouterr().err
    assert "gone.png" in err and "1 of 2 images could not be read" in err


@pytest.mark.parametrize("argv, message", [
    (["--format", "npy", "--images", "{t}/none.npy", "--labels", "{t}/x.npy"], "--images file not found"),
    (["--format", "npy", "--images", "{t}/images.npy"], "needs --labels"),
    (["--format", "npy", "--images", "{t}/images.npy", "--labels", "{t}/none.npy"], "--labels file not found"),
    (["--format", "npy", "--images", "{t}/images.npy", "--labels", "{t}/x.npy", "--category", "1"], "--category"),
    (["--format", "coco", "--images", "{t}", "--labels", "{t}/none.json"], "annotation file not found"),
    (["--format", "coco", "--images", "{t}/nodir", "--labels", "{t}/x.json"], "--images folder not found"),
    (["--format", "yolo", "--images", "{t}"], "needs --labels"),
    (["--format", "yolo", "--images", "{t}", "--labels", "{t}", "--category", "face"], "integer class ids"),
    (["--format", "yolo", "--images", "{t}", "--labels", "{t}", "--iou", "2"], "--iou"),
])
def test_cli_usage_errors(tmp_path, argv, message):
    from openmtcnn.cli.errors import UsageError

    np.save(tmp_path / "images.npy", np.zeros((1, 4, 4, 3), np.uint8))
    with pytest.raises(UsageError, match=message):
        _cli([a.format(t=tmp_path) for a in argv], FakeDetector({}))
