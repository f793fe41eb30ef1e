"""WIDER FACE evaluation (official protocol) on hand-made cases, and on the real data when present."""
from __future__ import annotations

import json

import numpy as np
import pytest

from openmtcnn.evaluate.ap import inclusive_iou, voc_ap
from openmtcnn.evaluate.widerface import (
    SETTINGS,
    evaluate,
    image_eval,
    image_pr,
    list_images,
    load_ground_truth,
    read_predictions,
    to_rows,
    write_prediction,
)

THRESHOLDS = 1 - (np.arange(1000) + 1) / 1000


def entry(boxes, easy, medium, hard) -> dict:
    b = np.asarray(boxes, np.float64).reshape(-1, 4)
    return {"boxes": b, "easy": np.asarray(easy, bool), "medium": np.asarray(medium, bool),
            "hard": np.asarray(hard, bool)}


# ---- voc_ap --------------------------------------------------------------------------------------

def test_voc_ap_perfect_curve():
    assert voc_ap(np.array([0.5, 1.0]), np.array([1.0, 1.0])) == pytest.approx(1.0)
    assert voc_ap(np.linspace(0.01, 1, 100), np.ones(100)) == pytest.approx(1.0)


def test_voc_ap_step_curve():
    # envelope: precision 1 up to recall .25, .8 up to .5, .4 up to 1
    recall = np.array([0.25, 0.5, 0.5, 1.0])
    precision = np.array([1.0, 0.5, 0.8, 0.4])
    assert voc_ap(recall, precision) == pytest.approx(0.25 * 1 + 0.25 * 0.8 + 0.5 * 0.4)


def test_voc_ap_partial_recall_and_empty():
    assert voc_ap(np.array([0.5]), np.array([1.0])) == pytest.approx(0.5)
    assert voc_ap(np.array([0.0, 0.0]), np.array([0.0, 0.0])) == 0.0
    assert voc_ap(np.zeros(0), np.zeros(0)) == 0.0


# ---- inclusive_iou -------------------------------------------------------------------------------

def test_inclusive_iou_known_values():
    a = np.array([[0, 0, 10, 10]], np.float64)  # 11 x 11 pixels
    b = np.array([[0, 0, 10, 10],     # identical
                  [5, 5, 15, 15],     # 6 x 6 overlap: 36 / (121 + 121 - 36)
                  [10, 0, 20, 10],    # shares one pixel column: 11 / (242 - 11)
                  [11, 0, 20, 10],    # disjoint
                  [30, 30, 40, 40]], np.float64)
    m = inclusive_iou(a, b)
    assert m.shape == (1, 5)
    np.testing.assert_allclose(m[0], [1, 36 / 206, 11 / 231, 0, 0])
    np.testing.assert_allclose(inclusive_iou(b, a), m.T)
    assert inclusive_iou(np.zeros((0, 4)), b).shape == (0, 5)


def test_inclusive_iou_of_xywh_rows():
    """x y w h -> x2 = x + w, as the evaluation converts them."""
    xywh = np.array([[10, 20, 30, 40], [15, 20, 30, 40]], np.float64)
    boxes = xywh.copy()
    boxes[:, 2:] += boxes[:, :2]
    inter = (40 - 15 + 1) * (60 - 20 + 1)
    area = 31 * 41
    assert inclusive_iou(boxes[:1], boxes[1:])[0, 0] == pytest.approx(inter / (2 * area - inter))


# ---- image_eval / image_pr ------------------------------------------------------------------------

def test_image_eval_ignored_faces_and_duplicates():
    gt = np.array([[0, 0, 20, 20], [50, 50, 20, 20]], np.float64)
    counted = np.array([True, False])
    pred = np.array([[0, 0, 20, 20, 0.9],     # hits counted face 0
                     [50, 50, 20, 20, 0.8],   # matches the ignored face
                     [1, 1, 20, 20, 0.7],     # face 0 again
                     [200, 200, 10, 10, 0.6],  # false positive
                     [51, 50, 19, 21, 0.5]])  # the ignored face again
    recalled, proposals = image_eval(pred, gt, counted)
    np.testing.assert_array_equal(recalled, [1, 1, 1, 1, 1])
    np.testing.assert_array_equal(proposals, [True, False, True, True, False])


def test_image_eval_below_iou_threshold_is_a_false_positive():
    gt = np.array([[0, 0, 20, 20]], np.float64)
    pred = np.array([[10, 10, 20, 20, 0.9], [0, 0, 20, 20, 0.5]])  # IoU (11*11)/(441+441-121) < .5
    recalled, proposals = image_eval(pred, gt, np.array([True]))
    np.testing.assert_array_equal(recalled, [0, 1])
    np.testing.assert_array_equal(proposals, [True, True])


def test_image_eval_recall_counts_faces_in_order():
    gt = np.array([[0, 0, 20, 20], [40, 0, 20, 20], [80, 0, 20, 20]], np.float64)
    pred = np.array([[80, 0, 20, 20, 0.9], [300, 0, 20, 20, 0.8], [0, 0, 20, 20, 0.7], [80, 0, 20, 20, 0.6],
                     [40, 0, 20, 20, 0.5]])
    recalled, proposals = image_eval(pred, gt, np.ones(3, bool))
    np.testing.assert_array_equal(recalled, [1, 1, 2, 2, 3])
    assert proposals.all()


def test_image_pr_counts_at_thresholds():
    scores = np.array([1.0, 0.6, 0.2])
    proposals = np.array([True, False, True])
    recalled = np.array([1.0, 1.0, 2.0])
    props, rec = image_pr(scores, proposals, recalled, np.array([0.999, 0.6, 0.5, 0.2, 0.1, 0.0]))
    np.testing.assert_array_equal(props, [1, 1, 1, 2, 2, 2])
    np.testing.assert_array_equal(rec, [1, 1, 1, 2, 2, 2])
    props, rec = image_pr(np.array([0.4]), np.array([True]), np.array([1.0]), np.array([0.9, 0.4]))
    np.testing.assert_array_equal(props, [0, 1])
    np.testing.assert_array_equal(rec, [0, 1])


# ---- evaluate --------------------------------------------------------------------------------------

@pytest.fixture
def one_image():
    """Two faces: face A counted in easy+medium, face B in medium+hard."""
    gt = {"ev/img": entry([[10, 10, 40, 40], [100, 100, 40, 40]],
                          easy=[True, False], medium=[True, True], hard=[False, True])}
    pred = {"ev/img": np.array([[10, 10, 40, 40, 1.0],       # TP on A, high score
                                [200, 200, 30, 30, 0.6543],  # FP, mid score
                                [100, 100, 40, 40, 0.0]])}   # TP on B, low score
    return gt, pred


def test_evaluate_hand_computed(one_image):
    gt, pred = one_image
    res = evaluate(pred, gt)
    assert set(res) == set(SETTINGS)
    # Normalised scores 1, .6543, 0. Thresholds 1 - (t+1)/1000: the mid score passes from
    # t = 345 (threshold .654), the low one only at t = 999 (threshold 0).
    # medium (both counted): P/R = 1/.5 for t < 345, .5/.5 up to t = 998, 2/3 / 1 at t = 999
    med = res["medium"]
    assert med["faces"] == 2
    p, r = np.array(med["precision"]), np.array(med["recall"])
    assert len(p) == len(r) == 1000
    np.testing.assert_allclose(p[:345], 1)
    np.testing.assert_allclose(p[345:999], 0.5)
    np.testing.assert_allclose(p[999], 2 / 3)
    np.testing.assert_allclose(r[:999], 0.5)
    np.testing.assert_allclose(r[999], 1)
    assert med["ap"] == pytest.approx(0.5 * 1 + 0.5 * 2 / 3)
    # easy (B ignored, so the low-score TP is no proposal): precision 1 then .5, recall 1 throughout
    easy = res["easy"]
    assert easy["faces"] == 1
    np.testing.assert_allclose(easy["recall"], 1)
    np.testing.assert_allclose(easy["precision"][:345], 1)
    np.testing.assert_allclose(easy["precision"][345:], 0.5)
    assert easy["ap"] == pytest.approx(1.0)
    # hard (A ignored): nothing counted until the FP (precision 0), then 1 of 2 at recall 1
    hard = res["hard"]
    assert hard["faces"] == 1
    np.testing.assert_allclose(hard["precision"][:999], 0)
    np.testing.assert_allclose(hard["precision"][999], 0.5)
    assert hard["ap"] == pytest.approx(0.5)


def test_evaluate_scores_are_min_max_normalised(one_image):
    gt, pred = one_image
    base = evaluate(pred, gt)
    shifted = {k: v.copy() for k, v in pred.items()}
    for v in shifted.values():
        v[:, 4] = v[:, 4] * 7.5 - 3.0
    res = evaluate(shifted, gt)
    for s in SETTINGS:
        assert res[s]["ap"] == pytest.approx(base[s]["ap"])
        np.testing.assert_allclose(res[s]["precision"], base[s]["precision"])


def test_evaluate_row_order_does_not_matter(one_image):
    gt, pred = one_image
    rev = {k: v[::-1].copy() for k, v in pred.items()}
    base, res = evaluate(pred, gt), evaluate(rev, gt)
    for s in SETTINGS:
        assert res[s]["ap"] == pytest.approx(base[s]["ap"])


def _random_gt(seed: int, n_images: int = 4) -> dict:
    rng = np.random.default_rng(seed)
    gt = {}
    for i in range(n_images):
        n = int(rng.integers(1, 6))
        boxes = np.array([[60 * j + 5, 10 + (i % 3) * 7, 30 + j, 35] for j in range(n)], np.float64)
        hard = np.ones(n, bool)
        medium = rng.random(n) < 0.7
        medium[0] = True
        easy = medium & (rng.random(n) < 0.6)
        gt[f"ev{i % 2}/im{i}"] = {"boxes": boxes, "easy": easy, "medium": medium, "hard": hard}
    return gt


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_perfect_detector_scores_ap_one(seed):
    gt = _random_gt(seed)
    rng = np.random.default_rng(seed + 100)
    preds = {}
    for k, e in gt.items():
        scores = rng.random(len(e["boxes"])) * 0.5 + 0.5
        preds[k] = np.hstack([e["boxes"], scores[:, None]])
    res = evaluate(preds, gt)
    for s in SETTINGS:
        assert res[s]["faces"] == sum(int(e[s].sum()) for e in gt.values())
        assert res[s]["ap"] == pytest.approx(1.0)
        assert res[s]["recall"][-1] == pytest.approx(1.0)


def test_evaluate_images_without_predictions_or_faces():
    gt = {"a/one": entry([[0, 0, 20, 20]], [True], [True], [True]),
          "a/two": entry([[0, 0, 20, 20]], [True], [True], [True]),
          "a/none": entry(np.zeros((0, 4)), [], [], [])}
    preds = {"a/one": np.array([[0, 0, 20, 20, 0.9]]),
             "a/two": np.zeros((0, 5)),                   # a face missed
             "a/none": np.array([[5, 5, 10, 10, 0.8]]),  # nothing to match: not scored
             "other/x": np.array([[0, 0, 5, 5, 0.5]])}    # not in the ground truth: ignored
    res = evaluate(preds, gt)
    for s in SETTINGS:
        assert res[s]["faces"] == 2
        assert res[s]["ap"] == pytest.approx(0.5)
    with pytest.raises(ValueError):
        evaluate({"nope/x": np.zeros((0, 5))}, gt)


def test_to_rows():
    rows = to_rows(np.array([[10, 20, 50, 80]], np.float32), np.array([0.75], np.float32))
    np.testing.assert_allclose(rows, [[10, 20, 40, 60, 0.75]])
    assert to_rows(np.zeros((0, 4)), np.zeros(0)).shape == (0, 5)


def test_prediction_files_round_trip(tmp_path):
    preds = {"0--Parade/0_Parade_1": np.array([[10.5, 20.0, 30.1, 40.9, 0.987654], [1.0, 2.0, 3.0, 4.0, 0.5]]),
             "4--Dancing/4_Dancing_7": np.zeros((0, 5)),
             "4--Dancing/4_Dancing_8": np.array([[0.0, 0.0, 12.0, 13.0, 1.0]])}
    for k, rows in preds.items():
        path = write_prediction(tmp_path, k, rows)
        assert path == tmp_path / f"{k}.txt"
        lines = path.read_text().splitlines()
        assert lines[0] == k.split("/")[1] and int(lines[1]) == len(rows)
    back = read_predictions(tmp_path)
    assert set(back) == set(preds)
    for k, rows in preds.items():
        assert back[k].shape == rows.shape
        np.testing.assert_allclose(back[k], rows, atol=1e-6)


# ---- run_widerface on a tiny hand-made set ---------------------------------------------------------

def _cell(items) -> np.ndarray:
    """A MATLAB cell array (one column) for scipy.io.savemat."""
    cell = np.empty((len(items), 1), object)
    for i, v in enumerate(items):
        cell[i, 0] = v
    return cell


def write_ground_truth(gt_dir, event: str, faces: dict[str, list]) -> None:
    """Ground truth in the official .mat layout: one event, its images' x y w h faces, all counted in every setting."""
    from scipy.io import savemat

    gt_dir.mkdir(parents=True)
    boxes = [np.array(b, np.float64).reshape(-1, 4) for b in faces.values()]
    savemat(gt_dir / "wider_face_val.mat", {"event_list": _cell([event]), "file_list": _cell([_cell(list(faces))]),
                                            "face_bbx_list": _cell([_cell(boxes)])})
    for s in SETTINGS:
        counted = _cell([np.arange(1, len(b) + 1)[:, None] for b in boxes])
        savemat(gt_dir / f"wider_{s}_val.mat", {"gt_list": _cell([counted])})


def test_run_widerface_goes_on_past_a_corrupt_image(detector, astronaut, astronaut_face, tmp_path):
    """The failure policy: a corrupt file is listed under "failed", gets an empty prediction file and its
    face counts as missed; the other image is scored, stage table included."""
    import cv2

    from openmtcnn.evaluate.report import save_widerface
    from openmtcnn.evaluate.widerface import run_widerface

    event = tmp_path / "images" / "0--Test"
    event.mkdir(parents=True)
    cv2.imwrite(str(event / "astronaut.jpg"), cv2.cvtColor(astronaut, cv2.COLOR_RGB2BGR))
    (event / "bad.jpg").write_bytes(np.random.default_rng(0).bytes(64))
    x1, y1, x2, y2 = astronaut_face
    write_ground_truth(tmp_path / "gt", "0--Test", {"astronaut": [x1, y1, x2 - x1, y2 - y1], "bad": [10, 10, 40, 50]})
    out = tmp_path / "out"
    r = run_widerface(detector, tmp_path / "images", tmp_path / "gt", out, show_progress=False, stages=True)
    assert r["images"] == 2 and r["failed"]["count"] == 1
    assert r["failed"]["images"][0]["image"] == "0--Test/bad"
    assert "could not decode" in r["failed"]["images"][0]["error"]
    for s in SETTINGS:
        assert r[s]["faces"] == 2 and r[s]["recall"][-1] == 0.5  # the astronaut found, the corrupt image's face missed
    assert r["stages"]["all"]["found"] == sum(r["stages"]["all"].values()) == 1  # only the image that was read
    assert read_predictions(out / "predictions")["0--Test/bad"].shape == (0, 5)
    assert "(2 images, 1 image failed)" in save_widerface(r, {}, out)
    assert json.loads((out / "results.json").read_text())["failed"] == r["failed"]


# ---- the real data (skipped without it) ------------------------------------------------------------

@pytest.fixture(scope="module")
def wider_gt(widerface_dir):
    pytest.importorskip("scipy")
    return load_ground_truth(widerface_dir / "eval_tools" / "ground_truth")


def test_load_ground_truth_on_the_val_subset(widerface_dir, wider_gt):
    keys = list_images(widerface_dir / "WIDER_val" / "images")
    assert len(keys) == 394
    assert all(k in wider_gt for k in keys)
    assert len(wider_gt) >= 394  # the .mat files cover the full val set
    assert all(k.count("/") == 1 and "--" in k.split("/")[0] for k in keys)
    assert sum(len(wider_gt[k]["boxes"]) for k in keys) == 5289
    for k, e in wider_gt.items():
        n = len(e["boxes"])
        assert e["boxes"].shape == (n, 4)
        for s in SETTINGS:
            assert e[s].shape == (n,) and e[s].dtype == bool
        assert (e["easy"] <= e["medium"]).all() and (e["medium"] <= e["hard"]).all()
    assert sum(int(wider_gt[k]["easy"].sum()) for k in keys) > 0


def test_ground_truth_agrees_with_the_txt_file(widerface_dir, wider_gt):
    """The .mat boxes of every image present equal those of wider_face_val_bbx_gt.txt."""
    txt = widerface_dir / "wider_face_split" / "wider_face_val_bbx_gt.txt"
    if not txt.is_file():
        pytest.skip("wider_face_val_bbx_gt.txt not present")
    lines = txt.read_text().splitlines()
    i, seen = 0, 0
    while i < len(lines) and lines[i].strip():
        name, n = lines[i].strip(), int(lines[i + 1])
        rows = [list(map(float, ln.split()[:4])) for ln in lines[i + 2:i + 2 + n]]
        i += 2 + max(n, 1)
        key = name[:-len(".jpg")]
        np.testing.assert_array_equal(wider_gt[key]["boxes"], np.array(rows).reshape(-1, 4), err_msg=key)
        seen += 1
    assert seen == 394


def test_eval_widerface_command_on_three_images(widerface_dir, wider_gt, tmp_path, capsys):
    from openmtcnn.cli.main import main

    src = widerface_dir / "WIDER_val" / "images"
    keys = [k for k in list_images(src) if k.startswith("19--Couple/")][:3]
    assert len(keys) == 3
    images = tmp_path / "images"
    for k in keys:
        (images / k).parent.mkdir(parents=True, exist_ok=True)
        (images / f"{k}.jpg").symlink_to(src / f"{k}.jpg")
    out = tmp_path / "out"
    code = main(["eval", "widerface", "--images", str(images), "--gt",
                 str(widerface_dir / "eval_tools" / "ground_truth"), "--out", str(out), "--stages"])
    assert code == 0, capsys.readouterr().err
    summary = capsys.readouterr().out
    assert "AP easy" in summary
    results = json.loads((out / "results.json").read_text())
    assert results["images"] == 3
    for s in SETTINGS:
        assert 0 <= results["ap"][s] <= 1
        assert results["curves"][s]["faces"] == sum(int(wider_gt[k][s].sum()) for k in keys)
    assert results["ap"]["easy"] > 0.3  # couples: large clear faces
    preds = read_predictions(out / "predictions")
    assert sorted(preds) == sorted(keys)
    # the written predictions score as the command reported
    again = evaluate(preds, wider_gt)
    for s in SETTINGS:
        assert again[s]["ap"] == pytest.approx(results["ap"][s], abs=2e-3)
    # --stages: every counted face of the hard setting has exactly one outcome
    assert "where the faces" in summary and (out / "stages.md").is_file()
    assert sum(results["stages"]["all"].values()) == results["curves"]["hard"]["faces"]
