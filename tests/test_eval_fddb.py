"""FDDB evaluation (Jain & Learned-Miller 2010 protocol) on synthetic folds with known answers."""
from __future__ import annotations

import json
import math

import cv2
import numpy as np
import pytest

from openmtcnn.detect import Detections
from openmtcnn.evaluate.fddb import (
    EllipseFit,
    boxes_to_rows,
    evaluate,
    image_counts,
    load_folds,
    match,
    overlap_matrix,
    read_detections,
    read_ellipse_list,
    read_image_list,
    roc,
    rows_to_ellipses,
    run_fddb,
    tpr_at_fp,
    write_detections,
)

UP = math.pi / 2  # FDDB faces are upright: the major radius points down the image


# ---- independent reference: full-image masks from coordinate grids -----------------------------

def grid_masks(shape, ellipses=(), rects=()):
    yy, xx = np.mgrid[0:shape[0], 0:shape[1]]
    out = []
    for a, b, t, cx, cy in ellipses:
        dx, dy = xx - cx, yy - cy
        u, v = dx * math.cos(t) + dy * math.sin(t), dy * math.cos(t) - dx * math.sin(t)
        out.append((u / a) ** 2 + (v / b) ** 2 <= 1 + 1e-9)
    for x, y, w, h in rects:
        out.append((xx >= x) & (xx <= x + w) & (yy >= y) & (yy <= y + h))
    return out


def grid_iou(m1, m2) -> float:
    union = (m1 | m2).sum()
    return float((m1 & m2).sum() / union) if union else 0.0


def ev(faces, rows, size=None, **kw) -> dict:
    """evaluate() on a single image."""
    return evaluate({"img": np.asarray(faces, float).reshape(-1, 5)},
                    {"img": np.asarray(rows, float).reshape(-1, 5)}, {"img": size} if size else None, **kw)


# ---- rasterisation and overlap -----------------------------------------------------------------

def test_overlap_equals_full_image_masks():
    rng = np.random.default_rng(0)
    shape = (120, 150)
    faces = np.column_stack([rng.uniform(8, 40, 6), rng.uniform(5, 30, 6), rng.uniform(-3, 3, 6),
                             rng.uniform(-10, 160, 6), rng.uniform(-10, 130, 6)])  # some cross the border
    rects = np.column_stack([rng.uniform(-20, 140, (12, 2)), rng.uniform(0, 60, (12, 2)), rng.random(12)])
    rects[:3, :4] = [[10, 10, 20, 30], [10.4, 9.6, 19.2, 30.7], [-5, -5, 200, 200]]
    got = overlap_matrix(faces, rects, image_size=shape)
    fm, rm = grid_masks(shape, faces), grid_masks(shape, rects=rects[:, :4])
    want = np.array([[grid_iou(f, r) for r in rm] for f in fm])
    np.testing.assert_allclose(got, want, atol=1e-12)
    assert (got > 0).any() and (got < 1).all()

    fit = EllipseFit(top=0.3, bottom=0.1, sides=0.05)
    ells = rows_to_ellipses(rects, fit)
    got = overlap_matrix(faces, ells, dets_are_ellipses=True, image_size=shape)
    em = grid_masks(shape, ells[:, :5])
    np.testing.assert_allclose(got, [[grid_iou(f, e) for e in em] for f in fm], atol=1e-12)


def test_overlap_without_image_size_is_not_clipped():
    face = [[10, 10, 0, 0, 0]]  # centred on the corner: three quarters fall outside the image
    box = [[-10, -10, 20, 20]]
    clipped = overlap_matrix(face, box, image_size=(50, 50))[0, 0]
    full = overlap_matrix(face, box)[0, 0]
    assert full == pytest.approx(grid_iou(*grid_masks((21, 21), [[10, 10, 0, 10, 10]], [[0, 0, 20, 20]])))
    assert clipped == pytest.approx(grid_iou(*grid_masks((50, 50), face, box)))
    assert clipped != pytest.approx(full)


def test_empty_inputs():
    assert overlap_matrix(np.zeros((0, 5)), [[0, 0, 5, 5]]).shape == (0, 1)
    assert overlap_matrix([[5, 5, 0, 10, 10]], np.zeros((0, 5))).shape == (1, 0)
    t, d, c, f = image_counts(np.zeros((0, 2)), np.array([0.9, 0.8]))
    np.testing.assert_array_equal(f, [1, 2])  # no faces: every detection is a false positive
    with pytest.raises(ValueError, match="no annotated faces"):
        roc([], 0)


# ---- matching and the two scores ---------------------------------------------------------------

FACES = [[30, 20, UP, 60, 60], [30, 20, UP, 160, 60]]
BOXES = [[40, 30, 40, 60], [140, 30, 40, 60]]  # x y w h: each box circumscribes one face


def test_perfect_boxes_give_tpr_one_at_zero_fp():
    r = ev(FACES, [[*BOXES[0], 0.9], [*BOXES[1], 0.8]], (120, 220))
    assert r["curves"]["fp"] == [0, 0]
    assert r["curves"]["tpr_discrete"] == [0.5, 1.0]
    d = r["tpr_at_fp"]["discrete"]["500"]
    assert d["tpr"] == 1.0 and d["fp"] == 0 and d["reached"] is False
    # continuous: each face adds the pixel IoU of an ellipse and its bounding box (about pi / 4)
    f0, f1, b0, b1 = grid_masks((120, 220), FACES, BOXES)
    want = (grid_iou(f0, b0) + grid_iou(f1, b1)) / 2
    assert r["curves"]["tpr_continuous"][-1] == pytest.approx(want)
    assert 0.7 < want < math.pi / 4


def test_low_overlap_box_is_fp_and_face_missed():
    box = [60, 60, 40, 60]  # covers a quarter of face 0 only
    iou = overlap_matrix(FACES[:1], [box])[0, 0]
    assert 0 < iou < 0.5
    r = ev(FACES[:1], [[*box, 0.9]])
    assert r["curves"]["tpr_discrete"] == [0.0] and r["curves"]["fp"] == [1]
    # the official continuous score still credits the matched overlap
    assert r["curves"]["tpr_continuous"] == [pytest.approx(iou)]


def test_two_detections_on_one_face_are_one_tp_one_fp():
    loose = [38, 28, 44, 64]
    r = ev(FACES[:1], [[*BOXES[0], 0.5], [*loose, 0.9]])
    assert r["curves"]["fp"] == [0, 1]  # the first kept detection is a TP, the second an FP
    assert r["curves"]["tpr_discrete"] == [1.0, 1.0]
    ious = overlap_matrix(FACES[:1], [loose, BOXES[0]])[0]
    assert ious[1] > ious[0] > 0.5
    # at the lower threshold the face goes to the better-overlapping box
    assert r["curves"]["tpr_continuous"] == [pytest.approx(ious[0]), pytest.approx(ious[1])]


def test_matching_maximises_total_overlap():
    ov = np.array([[0.9, 0.8], [0.7, 0.0]])  # faces x detections
    np.testing.assert_allclose(sorted(match(ov)), [0.7, 0.8])  # greedy (0.9 first) would find one pair
    assert match(np.zeros((2, 3))).size == 0


def test_matching_is_redone_per_threshold():
    ov = np.array([[0.6, 0.9],   # face A: the strong detection fits it, the weak one fits it better
                   [0.55, 0.0]])  # face B: only the strong detection overlaps it
    t, disc, cont, fp = image_counts(ov, np.array([0.9, 0.5]))
    np.testing.assert_allclose(t, [0.9, 0.5])
    np.testing.assert_allclose(disc, [1, 2])
    np.testing.assert_allclose(cont, [0.6, 1.45])
    np.testing.assert_allclose(fp, [0, 0])


def test_tied_scores_enter_together():
    ov = np.array([[0.8, 0.0, 0.0]])
    t, disc, cont, fp = image_counts(ov, np.array([0.7, 0.7, 0.2]))
    np.testing.assert_allclose(t, [0.7, 0.2])
    np.testing.assert_allclose(disc, [1, 1])
    np.testing.assert_allclose(fp, [1, 2])


def test_roc_pools_images_over_all_thresholds():
    a = image_counts(np.array([[0.9]]), np.array([0.9]))              # TP at 0.9
    b = image_counts(np.array([[0.0, 0.8]]), np.array([0.8, 0.7]))    # FP at 0.8, TP at 0.7
    c = roc([a, b, image_counts(np.zeros((1, 0)), np.zeros(0))], faces=3)
    np.testing.assert_allclose(c["threshold"], [0.9, 0.8, 0.7])
    np.testing.assert_allclose(c["fp"], [0, 1, 1])
    np.testing.assert_allclose(c["tpr_discrete"], [1 / 3, 1 / 3, 2 / 3])
    np.testing.assert_allclose(c["tpr_continuous"], [0.3, 0.3, 1.7 / 3])


def test_ellipse_fit_reproduces_the_annotation_exactly():
    face = [30, 20, UP, 100, 100]  # rows 70..130, columns 80..120
    box = [80, 80, 40, 50]         # grown 20% of its height upward: 70..130
    r = ev([face], [[*box, 0.9]], (200, 200), ellipse_fit=True)
    assert r["curves"]["tpr_continuous"] == [1.0] and r["curves"]["tpr_discrete"] == [1.0]
    r = ev([face], [[80, 75, 40, 50, 0.9]], (200, 200),
           ellipse_fit=EllipseFit(top=0.0, bottom=0.0, sides=0.0))  # no growth: 75..125, smaller
    assert r["curves"]["tpr_continuous"][0] < 1.0
    e = rows_to_ellipses(np.array([[80.0, 80, 40, 50, 0.9]]))[0]
    np.testing.assert_allclose(e, [30, 20, UP, 100, 100, 0.9])


def test_circle_in_its_bounding_box_continuous_score():
    r = 40  # about pi r^2 pixels against (2r + 1)^2
    res = ev([[r, r, 0, 100, 100]], [[100 - r, 100 - r, 2 * r, 2 * r, 1.0]])
    assert res["curves"]["tpr_continuous"][0] == pytest.approx(math.pi * r * r / (2 * r + 1) ** 2, abs=2e-3)


# ---- TPR at a number of false positives --------------------------------------------------------

def test_tpr_at_fp_takes_largest_fp_not_above_target():
    fp = np.array([0, 100, 499, 500, 800, 800, 1500])
    tpr = np.array([0.1, 0.3, 0.5, 0.55, 0.6, 0.65, 0.7])
    thr = np.linspace(0.9, 0.3, 7)
    out = tpr_at_fp(fp, tpr, thr)
    assert out["500"] == {"tpr": 0.55, "fp": 500, "threshold": pytest.approx(thr[3]), "reached": True}
    assert out["1000"]["tpr"] == 0.65 and out["1000"]["fp"] == 800 and out["1000"]["reached"]
    assert out["2000"] == {"tpr": 0.7, "fp": 1500, "threshold": pytest.approx(0.3), "reached": False}
    early = tpr_at_fp(np.array([700, 900]), np.array([0.5, 0.6]), np.array([0.9, 0.8]), targets=(500,))
    assert early["500"] == {"tpr": 0.0, "fp": 0, "threshold": None, "reached": True}  # the origin
    assert tpr_at_fp(np.zeros(0), np.zeros(0), np.zeros(0), targets=(10,))["10"]["reached"] is False


# ---- files -------------------------------------------------------------------------------------

ELLIPSES_TEXT = """2002/08/11/big/img_591
1
123.583300 85.549500 1.265839 269.693400 161.781200  1
2002/08/26/big/img_265
3
67.363819 44.511485 -1.476417 105.249970 87.209036  1
41.936870 27.064477 1.471906 184.070915 129.345601  1
70.993052 43.355200 1.370217 340.894300 117.498951  1
"""


def test_read_ellipse_list_and_folds(tmp_path):
    (tmp_path / "FDDB-fold-03-ellipseList.txt").write_text(ELLIPSES_TEXT)
    (tmp_path / "FDDB-fold-03.txt").write_text("2002/08/11/big/img_591\n2002/08/26/big/img_265\n")
    (tmp_path / "FDDB-fold-07-ellipseList.txt").write_text("a/b/img_1\n0\n")
    faces = read_ellipse_list(tmp_path / "FDDB-fold-03-ellipseList.txt")
    assert list(faces) == ["2002/08/11/big/img_591", "2002/08/26/big/img_265"]
    np.testing.assert_allclose(faces["2002/08/11/big/img_591"], [[123.5833, 85.5495, 1.265839, 269.6934, 161.7812]])
    assert faces["2002/08/26/big/img_265"].shape == (3, 5)
    folds = load_folds(tmp_path)  # only the folds present
    assert list(folds) == [3, 7] and folds[7]["a/b/img_1"].shape == (0, 5)
    assert read_image_list(tmp_path / "FDDB-fold-03.txt") == list(faces)

    (tmp_path / "FDDB-fold-03.txt").write_text("2002/08/11/big/img_591\nother\n")
    with pytest.raises(ValueError, match=r"FDDB-fold-03\.txt.*image 2"):
        load_folds(tmp_path)


def test_no_folds_is_a_clear_error(tmp_path):
    (tmp_path / "FDDB-fold-01.txt").write_text("a\n")
    with pytest.raises(FileNotFoundError, match="FDDB-fold-XX-ellipseList"):
        load_folds(tmp_path)
    with pytest.raises(FileNotFoundError, match="folds folder not found"):
        load_folds(tmp_path / "nope")
    with pytest.raises(FileNotFoundError, match="annotation file not found"):
        read_ellipse_list(tmp_path / "missing.txt")


@pytest.mark.parametrize("text, line, what", [
    ("img\n1\n10 5 0 3\n", 3, "expected 5 or 6 numbers"),
    ("img\n1\n10 5 0 3 4 x\n", 3, "expected 5 or 6 numbers"),
    ("img\ntwo\n", 2, "number of faces"),
    ("img\n2\n10 5 0 3 4 1\n", 2, "announces 2 rows"),
    ("img\n1\n10 5 0 3 4 1\nimg2\n", 4, "no count line"),
    ("img\n1\n10 5 0 3 4 1\nimg\n0\n", 4, "listed twice"),
    ("img\n1\n10 nan 0 3 4 1\n", 3, "expected 5 or 6"),
])
def test_malformed_annotation_names_file_and_line(tmp_path, text, line, what):
    path = tmp_path / "FDDB-fold-01-ellipseList.txt"
    path.write_text(text)
    with pytest.raises(ValueError, match=rf"FDDB-fold-01-ellipseList\.txt:{line}: .*{what}"):
        read_ellipse_list(path)


def test_zero_radius_is_rejected(tmp_path):
    path = tmp_path / "e.txt"
    path.write_text("img\n2\n10 5 0 3 4 1\n10 0 0 3 4 1\n")
    with pytest.raises(ValueError, match=r"e\.txt: face 2 of 'img' has a radius <= 0"):
        read_ellipse_list(path)


def test_detection_file_round_trip(tmp_path):
    rows = boxes_to_rows(np.array([[10.25, 20.5, 50.75, 80.0], [0, 0, 3, 4]], np.float32), np.array([0.99, 0.123456]))
    np.testing.assert_allclose(rows[0], [10.25, 20.5, 40.5, 59.5, 0.99], rtol=1e-6)
    dets = {"a/img_1": rows, "b/img_2": np.zeros((0, 5))}
    path = write_detections(tmp_path / "fold-01-out.txt", ["a/img_1", "b/img_2", "c/img_3"], dets)
    assert path.read_text().splitlines()[:3] == ["a/img_1", "2", "10.2500 20.5000 40.5000 59.5000 0.990000"]
    back = read_detections(path)
    assert list(back) == ["a/img_1", "b/img_2", "c/img_3"]  # images without detections get count 0
    np.testing.assert_allclose(back["a/img_1"], rows, atol=1e-4)
    assert back["b/img_2"].shape == back["c/img_3"].shape == (0, 5)
    ells = {"a/img_1": rows_to_ellipses(rows)}
    path = write_detections(tmp_path / "e.txt", ["a/img_1"], ells, ellipses=True)
    np.testing.assert_allclose(read_detections(path, ellipses=True)["a/img_1"], ells["a/img_1"], atol=1e-4)
    with pytest.raises(ValueError, match=r"e\.txt:3: expected 5 numbers"):
        read_detections(path)


# ---- end to end --------------------------------------------------------------------------------

class BlobDetector:
    """Stands in for MTCNN: the bounding box of each bright blob, plus one false positive in a corner."""

    def __init__(self):
        self.calls = 0

    def detect(self, image):
        self.calls += 1
        grey = image[:, :, 0] > 128
        n, _, stats, _ = cv2.connectedComponentsWithStats(grey.astype(np.uint8), connectivity=8)
        boxes = [[x, y, x + w - 1, y + h - 1] for x, y, w, h, _ in stats[1:]]
        scores = [0.9 - 0.1 * i for i in range(len(boxes))]
        boxes.append([0, 0, 9, 9])
        scores.append(0.05)
        b, s = np.array(boxes, np.float32), np.array(scores, np.float32)
        return Detections(b, s, np.zeros((len(b), 5, 2), np.float32))


FOLD_FACES = {
    1: {"2002/07/19/big/img_1": [[30, 20, UP, 50, 50], [25, 18, UP, 130, 50]],
        "2002/07/19/big/img_2": [[28, 22, UP, 80, 45]]},
    2: {"2003/01/01/big/img_3": [[30, 20, UP, 60, 55]],
        "2003/01/01/big/img_bad": [[30, 20, UP, 60, 55]],
        "2003/01/01/big/img_missing": [[30, 20, UP, 60, 55]]},
}


@pytest.fixture
def fddb(tmp_path):
    images, folds = tmp_path / "originalPics", tmp_path / "FDDB-folds"
    folds.mkdir()
    for fold, faces in FOLD_FACES.items():
        lines = []
        for name, ells in faces.items():
            lines += [name, str(len(ells))] + [" ".join(f"{v:.6f}" for v in e) + "  1" for e in ells]
            path = images / f"{name}.jpg"
            path.parent.mkdir(parents=True, exist_ok=True)
            if name.endswith("bad"):
                path.write_bytes(b"not a jpeg")
            elif not name.endswith("missing"):
                img = np.zeros((110, 180, 3), np.uint8)
                for a, b, t, cx, cy in ells:
                    cv2.ellipse(img, (cx, cy), (a, b), math.degrees(t), 0, 360, (255, 255, 255), -1)
                cv2.imwrite(str(path), img)
        (folds / f"FDDB-fold-{fold:02d}-ellipseList.txt").write_text("\n".join(lines) + "\n")
        (folds / f"FDDB-fold-{fold:02d}.txt").write_text("\n".join(faces) + "\n")
    return images, folds, tmp_path / "out"


def test_run_fddb_end_to_end(fddb):
    images, folds, out = fddb
    det = BlobDetector()
    r = run_fddb(det, images, folds, out, show_progress=False)
    assert det.calls == 3
    assert r["failed"]["count"] == 2  # a corrupt file and a missing one: listed, their faces missed, never fatal
    assert [f["image"] for f in r["failed"]["images"]] == ["2003/01/01/big/img_bad", "2003/01/01/big/img_missing"]
    assert "could not decode" in r["failed"]["images"][0]["error"]
    assert "no such image file" in r["failed"]["images"][1]["error"]
    assert r["images"] == 5 and r["faces"] == 6 and r["faces_in_failed_images"] == 2 and r["folds"] == [1, 2]
    assert r["curves"]["fp"][-1] == 3 and r["curves"]["tpr_discrete"][-1] == pytest.approx(4 / 6)
    assert r["curves"]["fp"][-2] == 0  # every blob box is a TP before the corner boxes come in
    d = r["tpr_at_fp"]["discrete"]["1000"]
    assert d == {"tpr": 0.6667, "fp": 3, "threshold": pytest.approx(0.05), "reached": False}
    assert 0.4 < r["tpr_at_fp"]["continuous"]["1000"]["tpr"] < 0.6667  # 4 faces at about pi / 4 each

    saved = json.loads((out / "results.json").read_text())
    assert saved["tpr_at_fp"] == r["tpr_at_fp"] and saved["failed"] == r["failed"]
    assert (out / "roc.png").stat().st_size > 1000
    fold2 = read_detections(out / "fold-02-out.txt")
    assert list(fold2) == list(FOLD_FACES[2]) and len(fold2["2003/01/01/big/img_3"]) == 2
    assert len(fold2["2003/01/01/big/img_bad"]) == 0
    assert [len(v) for v in read_detections(out / "fold-01-out.txt").values()] == [3, 2]
    assert not (out / "fold-01-ellipses-out.txt").exists()


def test_cli_fddb(fddb, capsys, monkeypatch):
    from openmtcnn.cli import eval_fddb
    from openmtcnn.cli.errors import UsageError
    from openmtcnn.cli.main import build_parser

    images, folds, out = fddb
    monkeypatch.setattr(eval_fddb, "make_detector", lambda args: BlobDetector())
    parser = build_parser()
    args = parser.parse_args(["eval", "fddb", "--images", str(images), "--folds", str(folds), "--out", str(out),
                              "--ellipse-fit", "--min-face", "12"])
    assert args.func(args) == 1  # two images failed
    captured = capsys.readouterr()
    assert "TPR at 1000 FP: discrete" in captured.out and "2 images failed" in captured.out
    assert "img_missing" in captured.err
    saved = json.loads((out / "results.json").read_text())
    assert saved["ellipse_fit"] == {"top": 0.2, "bottom": 0.0, "sides": 0.0}
    assert saved["settings"]["min_face"] == 12
    assert (out / "fold-02-ellipses-out.txt").is_file()

    args = parser.parse_args(["eval", "fddb", "--images", str(images / "nope"), "--folds", str(folds)])
    with pytest.raises(UsageError, match="--images folder not found"):
        args.func(args)


def test_missing_folders_are_usage_errors_under_python_m(tmp_path):
    """Run as ``python -m openmtcnn.cli.main``: the sub-command's usage error is main's (exit 2, no traceback)."""
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-m", "openmtcnn.cli.main", "eval", "fddb", "--images", str(tmp_path / "a"),
                           "--folds", str(tmp_path / "b")], capture_output=True, text=True)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "--images folder not found" in proc.stderr


def test_run_fddb_with_the_real_detector(detector, astronaut, astronaut_face, tmp_path):
    images, folds = tmp_path / "pics", tmp_path / "folds"
    (images / "nasa").mkdir(parents=True)
    folds.mkdir()
    cv2.imwrite(str(images / "nasa" / "astronaut.jpg"), cv2.cvtColor(astronaut, cv2.COLOR_RGB2BGR))
    x1, y1, x2, y2 = astronaut_face  # head ellipse: the face box grown upward, as FDDB annotates
    face = [(y2 - y1) * 0.6, (x2 - x1) / 2, UP, (x1 + x2) / 2, (y1 + y2) / 2 - (y2 - y1) * 0.1]
    (folds / "FDDB-fold-01-ellipseList.txt").write_text("nasa/astronaut\n1\n" + " ".join(map(str, face)) + " 1\n")
    r = run_fddb(detector, images, folds, tmp_path / "out", show_progress=False)
    assert r["failed"] == {"count": 0, "images": []} and r["faces"] == 1
    assert r["tpr_at_fp"]["discrete"]["500"]["tpr"] == 1.0
    fit = run_fddb(detector, images, folds, tmp_path / "out_fit", ellipse_fit=True, show_progress=False)
    assert fit["tpr_at_fp"]["continuous"]["500"]["tpr"] > r["tpr_at_fp"]["continuous"]["500"]["tpr"]


def test_plot_is_skipped_without_matplotlib(monkeypatch, tmp_path):
    import sys

    from openmtcnn.evaluate.fddb import plot_roc

    curves = {"fp": [0, 1], "tpr_discrete": [0.5, 1.0], "tpr_continuous": [0.4, 0.8]}
    assert plot_roc(curves, tmp_path / "a.png", "t") == tmp_path / "a.png"
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    assert plot_roc(curves, tmp_path / "b.png", "t") is None and not (tmp_path / "b.png").exists()
