"""Training-sample generation (openmtcnn.data): readers, IoU labels, augmentation, shards, resume, reader."""
from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import pytest
from _helpers import box_iou

from openmtcnn.data import (
    KIND_NAMES,
    LANDMARK,
    NEGATIVE,
    PART,
    POSITIVE,
    SampleSet,
    face_samples,
    facepoint_pictures,
    flip,
    SampleConfig,
    generate_hard,
    generate_pnet,
    generate_random,
    label_boxes,
    label_candidates,
    landmark_samples,
    read_facepoint,
    read_wider,
    rotate,
)
from openmtcnn import geometry
from openmtcnn.data.crops import jittered_squares

FIELDS = ("images", "kind", "box", "landmarks")


# ---- synthetic fixtures ----------------------------------------------------------------------
def draw_face(image: np.ndarray, box, rng) -> None:
    """A skin-coloured ellipse with two dark eyes and a mouth inside ``box``."""
    x1, y1, x2, y2 = box
    cx, cy, w, h = (x1 + x2) // 2, (y1 + y2) // 2, x2 - x1, y2 - y1
    colour = tuple(int(c) for c in rng.integers(150, 230, 3))
    cv2.ellipse(image, (cx, cy), (w // 2, h // 2), 0, 0, 360, colour, -1)
    for ex in (cx - w // 5, cx + w // 5):
        cv2.circle(image, (ex, cy - h // 8), max(w // 12, 1), (30, 30, 30), -1)
    cv2.line(image, (cx - w // 6, cy + h // 4), (cx + w // 6, cy + h // 4), (120, 20, 20), max(h // 20, 1))


@pytest.fixture(scope="module")
def wider(tmp_path_factory):
    """Four WIDER-style pictures (one without faces), their txt list, and the truth (x1 y1 x2 y2)."""
    root = tmp_path_factory.mktemp("wider")
    rng = np.random.default_rng(7)
    faces = {"ev/a.png": [(20, 30, 80, 100), (150, 40, 200, 100), (10, 160, 18, 170)],  # last: tiny
             "ev/b.png": [(60, 50, 160, 170)],
             "ev/c.png": [],
             "ev/d.png": [(100, 20, 140, 70), (30, 100, 90, 180)]}
    lines = []
    for name, boxes in faces.items():
        image = rng.integers(0, 120, (200, 240, 3), dtype=np.uint8)
        for box in boxes:
            draw_face(image, box, rng)
        (root / "images" / name).parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(root / "images" / name), image)
        lines += [name, str(len(boxes))]
        lines += [f"{x1} {y1} {x2 - x1} {y2 - y1} 0 0 0 0 0 0 " for x1, y1, x2, y2 in boxes] or ["0 0 0 0 0 0 0 0 0 0 "]
    lines[-1:-1] = []  # keep the official trailing space style
    # one invalid face in d.png: must be skipped
    d = lines.index("ev/d.png")
    lines[d + 1] = "3"
    lines.insert(d + 2, "5 5 30 30 0 0 0 1 0 0 ")
    (root / "gt.txt").write_text("\n".join(lines) + "\n")
    return root / "gt.txt", root / "images", faces


POINTS = np.array([[45.5, 50.5], [74.5, 50.5], [60.5, 64.5], [48.5, 80.5], [71.5, 80.5]])
BOX = np.array([30.0, 30.0, 90.0, 95.0])
COLOURS = [(255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 0), (0, 255, 255)]


def dot(image: np.ndarray, p, colour) -> None:
    """A 5x5 block centred on continuous point p (p = integer + 0.5)."""
    x, y = int(p[0] - 0.5), int(p[1] - 0.5)
    image[y - 2:y + 3, x - 2:x + 3] = colour


def face_with_marks(shift=(0, 0)) -> np.ndarray:
    image = np.full((120, 120, 3), 40, np.uint8)
    cv2.ellipse(image, (60 + shift[0], 62 + shift[1]), (30, 33), 0, 0, 360, (200, 170, 150), -1)
    for p, c in zip(POINTS + shift, COLOURS):
        dot(image, p, c)
    return image


@pytest.fixture(scope="module")
def facepoint(tmp_path_factory):
    """Three CNN_FacePoint-style faces with coloured marks on the five points, and their list."""
    root = tmp_path_factory.mktemp("facepoint")
    (root / "net_7876").mkdir()
    lines = []
    for k, shift in enumerate([(0, 0), (5, -3), (-4, 6)]):
        cv2.imwrite(str(root / "net_7876" / f"{k}.png"), cv2.cvtColor(face_with_marks(shift), cv2.COLOR_RGB2BGR))
        (l, t, r, b), pts = BOX + np.tile(shift, 2), (POINTS + shift).ravel()
        lines.append(f"net_7876/{k}.png {l:g} {r:g} {t:g} {b:g} " + " ".join(f"{v:f}" for v in pts))
    (root / "list.txt").write_text("\n".join(lines) + "\n")
    return root / "list.txt", root


def make(wider, facepoint, out, **kw) -> dict:
    txt, images, _ = wider
    extra = kw.pop("extra", ())
    options = {"workers": 1, "verbose": False, "images_per_shard": 1, "faces_per_shard": 2, **kw}
    return generate_random(txt, images, facepoint[0], facepoint[1], out, SampleConfig(**options), extra)


def shard_arrays(folder: Path) -> dict[str, np.ndarray]:
    """Every shard of a set, loaded whole and concatenated in shard order."""
    names = sorted(p.name for p in folder.glob("shard_*"))
    return {f: np.concatenate([np.load(folder / n / f"{f}.npy") for n in names]) for f in FIELDS}


def crop_iou(target: np.ndarray) -> float:
    """IoU of a square crop with the face its box target points to (scale-free: crop = unit square)."""
    return box_iou([0, 0, 1, 1], [target[0], target[1], 1 + target[2], 1 + target[3]])


# ---- readers ---------------------------------------------------------------------------------
def test_read_wider(wider):
    txt, images, faces = wider
    got = read_wider(txt, images)
    assert [p.path.name for p in got] == ["a.png", "b.png", "c.png", "d.png"]
    for item, name in zip(got, faces):
        np.testing.assert_array_equal(item.boxes, np.array(faces[name], float).reshape(-1, 4))  # invalid face dropped
    assert read_wider(txt, images, keep_invalid=True)[3].boxes.shape == (3, 4)


@pytest.mark.parametrize("text, line", [
    ("a.jpg\ntwo\n1 2 3 4 0 0 0 0 0 0\n", 2),
    ("a.jpg\n2\n1 2 3 4 0 0 0 0 0 0\n1 2 x 4 0 0 0 0 0 0\n", 4),
    ("a.jpg\n1\n1 2 3 4 0 0 0 0 0 0\nb.jpg\n3\n1 2 3 4 0 0 0 0 0 0\n", 7),
    ("a.jpg\n1\n1 2\n", 3),
    ("1 2 3 4 0 0 0 0 0 0\n", 1),
])
def test_malformed_wider_names_line(tmp_path, text, line):
    path = tmp_path / "bad.txt"
    path.write_text(text)
    with pytest.raises(ValueError, match=f"bad.txt:{line}:"):
        read_wider(path, tmp_path)


def test_read_facepoint_and_errors(facepoint, tmp_path):
    items = read_facepoint(*facepoint)
    assert len(items) == 3
    np.testing.assert_allclose(items[0].box, BOX)  # left right top bottom -> x1 y1 x2 y2
    np.testing.assert_allclose(items[0].points, POINTS)
    bad = tmp_path / "bad.txt"
    bad.write_text(facepoint[0].read_text().splitlines()[0] + "\nnet/x.jpg 1 2 3 4 5\n")
    with pytest.raises(ValueError, match="bad.txt:2:"):
        read_facepoint(bad, tmp_path)
    with pytest.raises(FileNotFoundError):
        read_facepoint(tmp_path / "absent.txt", tmp_path)


def test_missing_image_is_named(wider, tmp_path):
    txt = wider[0]
    with pytest.raises(FileNotFoundError, match="a.png"):
        generate_random(txt, tmp_path, None, None, tmp_path / "out", SampleConfig(workers=1, verbose=False))


# ---- labels and targets ----------------------------------------------------------------------
def test_label_bands_match_independent_iou():
    rng = np.random.default_rng(0)
    gts = np.array([[100.0, 100.0, 160.0, 170.0], [300.0, 120.0, 330.0, 150.0], [50.0, 300.0, 60.0, 310.0]])
    xy, side = rng.integers(0, 350, (300, 2)), rng.integers(10, 80, (300, 1))
    crops = np.concatenate([jittered_squares(rng, gts, 300, shift=0.5, scale=(0.5, 1.6)), np.hstack([xy, xy + side])])
    kind, best = label_boxes(crops, gts, min_face=20)
    for c, k, b in zip(crops, kind, best):
        overlaps = [box_iou(c, g) for g in gts]
        top = max(overlaps)
        if k == NEGATIVE:
            assert top < 0.3
        elif k == POSITIVE:
            assert top >= 0.65 and b == int(np.argmax(overlaps)) and b != 2  # the 10-px face teaches nothing
        elif k == PART:
            assert 0.4 <= top < 0.65 and b != 2
        else:
            assert 0.3 <= top < 0.4 or (top >= 0.4 and np.argmax(overlaps) == 2)
    assert {NEGATIVE, POSITIVE, PART, -1} <= set(kind.tolist())


def test_label_candidates_targets_reconstruct_gt():
    image = np.random.default_rng(1).integers(0, 255, (300, 300, 3), dtype=np.uint8)
    gt = np.array([[100.0, 100.0, 200.0, 200.0]])
    # same-size squares shifted by dx: IoU = (100 - dx) / (100 + dx)
    shifts = {POSITIVE: 10, PART: 35, -1: 48, NEGATIVE: 80}
    cands = np.array([[100 + dx, 100, 200 + dx, 200] for dx in shifts.values()], float)
    samples = label_candidates(image, cands, gt, size=24)
    np.testing.assert_array_equal(samples.kind, [POSITIVE, PART, NEGATIVE])
    kept = cands[[0, 1]]
    wh = np.tile(kept[:, 2:] - kept[:, :2], 2)
    np.testing.assert_allclose(kept + samples.box[:2] * wh, np.repeat(gt, 2, axis=0), atol=1e-4)  # regress(c, t) = g
    assert np.isnan(samples.box[2]).all() and np.isnan(samples.landmarks).all()
    assert samples.images.shape == (3, 24, 24, 3) and samples.images.dtype == np.uint8
    # the crop the cascade would hand R-Net for that box (one resampler), as uint8; OpenCV's area resize within 1
    np.testing.assert_array_equal(samples.images[0], np.rint(geometry.crop_resize(image, cands[:1], 24)[0]))
    np.testing.assert_allclose(samples.images[0], cv2.resize(image[100:200, 110:210], (24, 24),
                                                             interpolation=cv2.INTER_AREA), atol=1)


def test_label_candidates_squares_and_caps_negatives():
    image = np.zeros((200, 200, 3), np.uint8)
    gt = np.array([[50.0, 50.0, 90.0, 100.0]])
    rng = np.random.default_rng(3)
    negs = np.column_stack([rng.uniform(110, 150, (40, 2)), rng.uniform(160, 190, (40, 2))])
    cands = np.vstack([[[52.0, 48.0, 88.0, 102.0]], negs])  # a tall box: squared to 54 x 54
    s = label_candidates(image, cands, gt, 12, neg_ratio=3.0, rng=np.random.default_rng(0))
    assert (s.kind == POSITIVE).sum() == 1 and (s.kind == NEGATIVE).sum() == 3
    # the squared crop: side 54 around centre (70, 75) -> (43, 48, 97, 102)
    np.testing.assert_allclose(s.box[0], (np.array([50, 50, 90, 100]) - [43, 48, 97, 102]) / 54, atol=1e-6)


def test_face_samples_bands_and_counts(wider):
    txt, images, _ = wider
    item = read_wider(txt, images)[0]
    image = cv2.cvtColor(cv2.imread(str(item.path)), cv2.COLOR_BGR2RGB)
    s = face_samples(image, item.boxes, 12, np.random.default_rng(0), negatives=30, attempts=40)
    assert (s.kind == NEGATIVE).sum() >= 30 and (s.kind == POSITIVE).sum() > 0 and (s.kind == PART).sum() > 0
    for k, t in zip(s.kind, s.box):
        if k == POSITIVE:
            assert crop_iou(t) >= 0.65 - 1e-5
        elif k == PART:
            assert 0.4 - 1e-5 <= crop_iou(t) < 0.65 + 1e-5
        else:
            assert np.isnan(t).all()


# ---- landmark augmentation -------------------------------------------------------------------
def test_flip_mirrors_and_swaps():
    image = face_with_marks()
    mirrored, box, pts = flip(image, BOX, POINTS)
    np.testing.assert_array_equal(mirrored, image[:, ::-1])
    np.testing.assert_allclose(box, [120 - 90, 30, 120 - 30, 95])
    np.testing.assert_allclose(pts[0], [120 - POINTS[1, 0], POINTS[1, 1]])  # new left eye = old right eye
    np.testing.assert_allclose(pts[1], [120 - POINTS[0, 0], POINTS[0, 1]])
    np.testing.assert_allclose(pts[2], [120 - POINTS[2, 0], POINTS[2, 1]])
    np.testing.assert_allclose(pts[3], [120 - POINTS[4, 0], POINTS[4, 1]])
    np.testing.assert_allclose(pts[4], [120 - POINTS[3, 0], POINTS[3, 1]])
    # every pictured mark lands on its mirrored point
    for p, c in zip(pts, [COLOURS[i] for i in (1, 0, 2, 4, 3)]):
        np.testing.assert_array_equal(mirrored[int(p[1]), int(p[0])], c)


def test_flipped_samples_keep_left_on_the_left():
    s = landmark_samples(face_with_marks(), BOX, POINTS, 48, np.random.default_rng(0), count=8, flip_prob=1.0,
                         rotate_prob=0.0)
    assert len(s.kind) >= 4 and (s.kind == LANDMARK).all() and np.isnan(s.box).all()
    for image, t in zip(s.images, s.landmarks):
        assert t[0, 0] < t[1, 0] and t[3, 0] < t[4, 0]
        x, y = (t[0] * 48).astype(int)
        assert image[y, x, 1] > 150 and image[y, x, 0] < 100  # the left-eye target sits on the (old right) green mark


def centroid(channel: np.ndarray) -> np.ndarray:
    """Intensity-weighted centre of a one-dot picture, continuous x, y."""
    ys, xs = np.indices(channel.shape)
    w = channel.astype(np.float64)
    return np.array([(w * (xs + 0.5)).sum(), (w * (ys + 0.5)).sum()]) / w.sum()


def test_rotation_moves_points_with_the_picture():
    for k, p in enumerate(POINTS):
        image = np.zeros((120, 120, 3), np.uint8)
        dot(image, p, (255, 255, 255))
        turned, q = rotate(image, POINTS, 15.0 - 7 * k, (60.0, 62.0))
        assert np.abs(centroid(turned[..., 0]) - q[k]).max() < 0.3
    # end to end: the same draws on five one-dot pictures, so each crop shows one rotated mark
    per_dot = []
    for p in POINTS:
        image = np.zeros((120, 120, 3), np.uint8)
        dot(image, p, (255, 255, 255))
        per_dot.append(landmark_samples(image, BOX, POINTS, 48, np.random.default_rng(5), count=6,
                                        flip_prob=0.0, rotate_prob=1.0, max_angle=15.0))
    targets = per_dot[0].landmarks
    assert len(targets) >= 3
    upright = (POINTS[1, 1] - POINTS[0, 1]) / (POINTS[1, 0] - POINTS[0, 0])
    slopes = (targets[:, 1, 1] - targets[:, 0, 1]) / (targets[:, 1, 0] - targets[:, 0, 0])
    assert np.abs(slopes - upright).max() > 0.05  # the samples really are rotated
    for k, s in enumerate(per_dot):
        np.testing.assert_array_equal(s.landmarks, targets)
        for image, t in zip(s.images, s.landmarks):
            assert np.abs(centroid(image[..., 0]) - t[k] * 48).max() < 1.5


# ---- sample sets on disk ---------------------------------------------------------------------
def test_determinism_and_workers(wider, facepoint, tmp_path):
    a = make(wider, facepoint, tmp_path / "a", seed=3)
    b = make(wider, facepoint, tmp_path / "b", seed=3, workers=2)
    make(wider, facepoint, tmp_path / "c", seed=4)
    assert a["counts"] == b["counts"] and a["complete"]
    ra, rb, rc = (shard_arrays(tmp_path / x / "12") for x in "abc")
    for f in FIELDS:
        np.testing.assert_array_equal(ra[f], rb[f])
    assert len(ra["kind"]) != len(rc["kind"]) or not np.array_equal(ra["images"], rc["images"])


def test_resume_rewrites_only_missing_shards(wider, facepoint, tmp_path):
    make(wider, facepoint, tmp_path / "ref")
    ref = shard_arrays(tmp_path / "ref" / "12")
    make(wider, facepoint, tmp_path / "run")
    folder = tmp_path / "run" / "12"
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["total_shards"] == 6 and len(manifest["shards"]) == 6  # 4 pictures + 2 face shards
    # a kill after 3 shards: shard 3 written but unrecorded, 4 and 5 absent, a half-written temporary left over
    manifest["shards"] = manifest["shards"][:3]
    manifest["complete"] = False
    (folder / "manifest.json").write_text(json.dumps(manifest))
    for name in ("shard_00004", "shard_00005"):
        shutil.rmtree(folder / name)
    (folder / ".shard_00004.tmp-dead").mkdir()
    before = {p.name: p.stat().st_mtime_ns for p in folder.glob("shard_0000[0-2]/*.npy")}
    summary = make(wider, facepoint, tmp_path / "run")
    assert summary["complete"] and summary["shards"] == 6
    assert {p.name: p.stat().st_mtime_ns for p in folder.glob("shard_0000[0-2]/*.npy")} == before
    assert not list(folder.glob(".shard_*"))
    got = shard_arrays(folder)
    for f in FIELDS:
        np.testing.assert_array_equal(got[f], ref[f])
    assert json.loads((folder / "manifest.json").read_text()) == \
        json.loads((tmp_path / "ref" / "12" / "manifest.json").read_text())
    with pytest.raises(ValueError, match="seed"):
        make(wider, facepoint, tmp_path / "run", seed=9)


def test_rerun_checks_the_shards_it_lists(wider, facepoint, tmp_path, capsys):
    """A listed shard cut short (or gone) is named on stderr and made again; the set ends as an unbroken run's."""
    make(wider, facepoint, tmp_path / "ref")
    make(wider, facepoint, tmp_path / "run")
    folder = tmp_path / "run" / "12"
    cut = folder / "shard_00002" / "images.npy"
    cut.write_bytes(cut.read_bytes()[:-100])
    (folder / "shard_00004" / "box.npy").unlink()
    with pytest.raises(ValueError, match=r"shard_00002.images\.npy.*cut short"):  # the reader names the file
        SampleSet(folder)[np.arange(len(SampleSet(folder)))]
    capsys.readouterr()
    summary = make(wider, facepoint, tmp_path / "run")
    err = capsys.readouterr().err
    assert str(cut) in err and "shard_00004" in err and err.count("making this shard again") == 2
    assert summary["complete"] and summary["shards"] == 6
    ref, got = shard_arrays(tmp_path / "ref" / "12"), shard_arrays(folder)
    for f in FIELDS:
        np.testing.assert_array_equal(got[f], ref[f])
    make(wider, facepoint, tmp_path / "run")  # all whole now: nothing said, nothing made
    assert capsys.readouterr().err == ""


@pytest.mark.parametrize("text", [b"{\"shards\": [", b"\xff\xfe", b"[1, 2]"], ids=["cut", "not-utf8", "list"])
def test_damaged_manifest_is_an_error_naming_it(wider, facepoint, tmp_path, text):
    make(wider, facepoint, tmp_path)
    (tmp_path / "12" / "manifest.json").write_bytes(text)
    for call in (lambda: SampleSet(tmp_path / "12"), lambda: make(wider, facepoint, tmp_path)):
        with pytest.raises(ValueError, match=r"12.manifest\.json"):
            call()


def test_sample_set_reader(wider, facepoint, tmp_path):
    summary = make(wider, facepoint, tmp_path, size=24)
    s = SampleSet(tmp_path / "24")
    full = shard_arrays(tmp_path / "24")
    assert len(s) == len(full["kind"]) == summary["total"] and s.size == 24 and s.complete
    assert s.counts() == summary["counts"] and all(v > 0 for v in s.counts().values())
    idx = np.random.default_rng(0).permutation(len(s))[:200]
    images, kind, box, marks = s[idx]
    assert images.shape == (200, 24, 24, 3) and images.dtype == np.uint8 and kind.dtype == np.int8
    assert box.dtype == np.float32 and marks.shape == (200, 5, 2)
    for f, got in zip(FIELDS, (images, kind, box, marks)):
        np.testing.assert_array_equal(got, full[f][idx])
    by_kind = s.indices_by_kind()
    for k, where in by_kind.items():
        assert (full["kind"][where] == k).all() and len(where) == s.counts()[KIND_NAMES[k]]
        box_rows, mark_rows = full["box"][where], full["landmarks"][where]
        assert np.isfinite(box_rows).all() if k in (POSITIVE, PART) else np.isnan(box_rows).all()
        assert np.isfinite(mark_rows).all() if k == LANDMARK else np.isnan(mark_rows).all()
    assert (full["landmarks"][by_kind[LANDMARK]] >= 0).all() and (full["landmarks"][by_kind[LANDMARK]] <= 1).all()
    np.testing.assert_array_equal(s[-1].images, full["images"][-1])
    np.testing.assert_array_equal(s[3:7].kind, full["kind"][3:7])
    with pytest.raises(IndexError):
        s[[len(s)]]
    with pytest.raises(FileNotFoundError):
        SampleSet(tmp_path / "nothing")


def test_generate_hard_with_a_fake_proposer(wider, facepoint, tmp_path):
    txt, images, _ = wider
    pictures = read_wider(txt, images)
    in_order = iter(pictures)  # the proposer is called once a shard with its pictures, in order

    def propose(rgbs: list[np.ndarray]) -> list[np.ndarray]:
        """Jittered copies of the faces in each picture, plus a grid of background boxes."""
        out = []
        for _ in rgbs:
            key = next(in_order)
            near = jittered_squares(np.random.default_rng(0), key.boxes, 10) if len(key.boxes) else np.zeros((0, 4))
            g = np.arange(0, 180, 20.0)
            grid = np.array([[x, y, x + 25, y + 25] for x in g for y in g])
            out.append(np.vstack([near, grid]))
        return out

    cfg = SampleConfig(size=24, neg_ratio=2.0, images_per_shard=1, workers=1, verbose=False)
    summary = generate_hard(pictures, propose, tmp_path, cfg, tag="fake", facepoint_list=facepoint[0],
                            facepoint_images=facepoint[1])
    assert summary["complete"] and summary["counts"]["landmark"] > 0 and summary["counts"]["positive"] > 0
    manifest = json.loads((tmp_path / "24" / "manifest.json").read_text())
    for entry in manifest["shards"][:4]:  # one picture a shard: negatives capped by the ratio
        c = entry["counts"]
        assert c["negative"] <= math.ceil(2.0 * max(c["positive"], 1))
    assert SampleSet(tmp_path / "24").counts() == summary["counts"]
    # landmark samples alone (crops of no WIDER face): the very ones the mined set holds, without mining
    only = generate_random(txt, images, *facepoint, tmp_path / "only", replace(cfg, negatives=0, near=0, attempts=0))
    assert only["counts"]["landmark"] == summary["counts"]["landmark"] and only["total"] == only["counts"]["landmark"]
    mined, alone = shard_arrays(tmp_path / "24"), shard_arrays(tmp_path / "only" / "24")
    marks = mined["kind"] == LANDMARK
    for f in FIELDS:
        np.testing.assert_array_equal(alone[f], mined[f][marks])
    with pytest.raises(ValueError, match="neg_ratio must be > 0"):
        generate_hard(pictures, propose, tmp_path / "bad", SampleConfig(size=24, neg_ratio=0, verbose=False))


def test_facepoint_boxes_move_to_the_wider_convention(facepoint):
    faces = read_facepoint(*facepoint)
    same = facepoint_pictures(faces, offsets=(0, 0, 0, 0))
    assert [p.path for p in same] == [f.path for f in faces]
    np.testing.assert_array_equal(np.concatenate([p.boxes for p in same]), np.stack([f.box for f in faces]))
    moved = facepoint_pictures(faces)  # WIDER boxes reach higher (hairline) and lower (chin)
    for f, p in zip(faces, moved):
        w, h = f.box[2] - f.box[0], f.box[3] - f.box[1]
        assert p.boxes.shape == (1, 4)
        np.testing.assert_allclose(p.boxes[0], f.box + np.array([-0.027 * w, -0.294 * h, 0.063 * w, 0.133 * h]))
    assert facepoint_pictures([]) == []


def test_landmark_samples_in_the_wider_frame(wider, facepoint, tmp_path):
    """Cropped around the moved boxes, the eyes sit lower in the crops (the box now starts at the hairline)."""
    kw = {"negatives": 0, "near": 0, "min_face": 1000}  # landmark samples only
    plain = make(wider, facepoint, tmp_path / "plain", **kw)
    moved = make(wider, facepoint, tmp_path / "moved", landmark_frame="wider", **kw)
    assert plain["counts"]["landmark"] > 0 and moved["counts"]["landmark"] > 0
    settings = [json.loads((tmp_path / d / "12" / "manifest.json").read_text())["settings"] for d in ("plain", "moved")]
    assert "landmark_frame" not in settings[0] and settings[1]["landmark_frame"] == "wider"
    eyes = [shard_arrays(tmp_path / d / "12")["landmarks"][:, :2, 1].mean() for d in ("plain", "moved")]
    assert eyes[1] > eyes[0] + 0.05, eyes
    with pytest.raises(ValueError, match="landmark frame"):
        make(wider, facepoint, tmp_path / "bad", landmark_frame="celeba", **kw)


def test_extra_pictures_are_cropped_and_mined(wider, facepoint, tmp_path):
    extra = facepoint_pictures(read_facepoint(*facepoint))
    plain = make(wider, (None, None), tmp_path / "plain", negatives=0, near=0)
    more = make(wider, (None, None), tmp_path / "more", negatives=0, near=0, extra=extra)
    assert more["counts"]["positive"] > plain["counts"]["positive"] and more["shards"] == plain["shards"] + 3
    manifest = json.loads((tmp_path / "more" / "12" / "manifest.json").read_text())
    assert manifest["settings"]["extra_pictures"] == 3
    assert "extra_pictures" not in json.loads((tmp_path / "plain" / "12" / "manifest.json").read_text())["settings"]
    rows, first = shard_arrays(tmp_path / "more" / "12"), shard_arrays(tmp_path / "plain" / "12")
    for f in FIELDS:  # the WIDER shards come first, unchanged
        np.testing.assert_array_equal(rows[f][:plain["total"]], first[f])
    assert set(rows["kind"][plain["total"]:].tolist()) <= {POSITIVE, PART}
    moved = np.concatenate([p.boxes for p in extra])  # every extra crop overlaps its moved box as labelled
    targets = rows["box"][plain["total"]:]
    assert min(crop_iou(t) for t in targets) >= 0.4 and len(moved) == 3
    called = []

    def propose(rgbs: list[np.ndarray]) -> list[np.ndarray]:
        called.extend(rgb.shape for rgb in rgbs)
        return [np.array([[30.0, 10.0, 95.0, 105.0], [0.0, 0.0, 20.0, 20.0]]) for _ in rgbs]

    txt, images, _ = wider
    cfg = SampleConfig(size=24, images_per_shard=1, limit=2, workers=1, verbose=False)
    hard = generate_hard(read_wider(txt, images), propose, tmp_path / "hard", cfg, extra=extra)
    assert len(called) == 4 and called[-1] == (120, 120, 3)  # 2 WIDER pictures, then 2 of the extra faces
    shards = json.loads((tmp_path / "hard" / "24" / "manifest.json").read_text())["shards"]
    assert hard["complete"] and all(e["counts"]["positive"] + e["counts"]["part"] >= 1 for e in shards[2:4])


def test_real_data_quick(training_data, tmp_path):
    wider_dir, fp = training_data / "widerface", training_data / "cnn_facepoint"
    txt = wider_dir / "wider_face_split" / "wider_face_train_bbx_gt.txt"
    summary = generate_pnet(txt, wider_dir / "WIDER_train" / "images", fp / "trainImageList.txt", fp, tmp_path,
                            SampleConfig(limit=3, workers=1, verbose=False))
    assert summary["complete"] and all(v > 0 for v in summary["counts"].values())


# ---- layering --------------------------------------------------------------------------------
LAYER_SCRIPT = r"""
import importlib, json, pkgutil, sys, types
root = sys.argv[1]
sys.modules["torch"] = None  # any "import torch" fails
pkg = types.ModuleType("openmtcnn")  # the package without its __init__ (which loads the detector)
pkg.__path__ = [root + "/openmtcnn"]
sys.modules["openmtcnn"] = pkg
import openmtcnn.data
for m in pkgutil.iter_modules(openmtcnn.data.__path__):
    importlib.import_module("openmtcnn.data." + m.name)
print(json.dumps(sorted(k for k, v in sys.modules.items() if v is not None and
                        (k.startswith("openmtcnn") or k.split(".")[0] in ("torch", "onnxruntime")))))
"""


def test_data_imports_nothing_upward(repo_root):
    proc = subprocess.run([sys.executable, "-c", LAYER_SCRIPT, str(repo_root)], cwd=repo_root,
                          check=False, capture_output=True, text=True, timeout=60, env=dict(os.environ, PYTHONPATH=str(repo_root)))
    assert proc.returncode == 0, proc.stderr
    loaded = json.loads(proc.stdout.strip().splitlines()[-1])
    assert "openmtcnn.data.generate" in loaded
    allowed = ("openmtcnn", "openmtcnn.data", "openmtcnn.fileio", "openmtcnn.geometry", "openmtcnn.progress")
    assert [m for m in loaded if not (m in allowed or m.startswith("openmtcnn.data."))] == []
