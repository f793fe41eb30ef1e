"""The fast paths give the answers of the plain ones: NMS, integral image, pyramid, backends, batching."""
from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

import openmtcnn.detect.boxes as B
from openmtcnn import MTCNN
from openmtcnn.cli.main import main
from openmtcnn.evaluate.speed import STAGE_GROUPS, bench_mtcnn, fit_frame, format_table


def reference_nms(boxes, scores, threshold, mode):
    """The textbook greedy loop, written independently of the package."""
    order = list(np.argsort(-scores, kind="stable"))
    keep = []
    while order:
        i = order.pop(0)
        keep.append(i)
        survivors = []
        for j in order:
            w = min(boxes[i, 2], boxes[j, 2]) - max(boxes[i, 0], boxes[j, 0])
            h = min(boxes[i, 3], boxes[j, 3]) - max(boxes[i, 1], boxes[j, 1])
            inter = max(w, 0) * max(h, 0)
            ai = (boxes[i, 2] - boxes[i, 0]) * (boxes[i, 3] - boxes[i, 1])
            aj = (boxes[j, 2] - boxes[j, 0]) * (boxes[j, 3] - boxes[j, 1])
            denom = min(ai, aj) if mode == "min" else ai + aj - inter
            if inter / denom <= threshold:
                survivors.append(j)
        order = survivors
    return np.array(keep, dtype=np.int64)


@pytest.mark.parametrize("mode", ["union", "min"])
@pytest.mark.parametrize("n, spread", [(0, 10), (1, 10), (60, 400), (200, 200), (150, 15)])
def test_nms_equals_the_greedy_loop(n, spread, mode):
    rng = np.random.default_rng(n + spread)
    x, y, s = rng.uniform(0, spread, n), rng.uniform(0, spread, n), rng.uniform(5, 40, n)
    x[1::4] = x[::4][:len(x[1::4])]  # equal left edges
    boxes = np.stack([x, y, x + s, y + s * 1.2], 1).reshape(-1, 4)
    scores = rng.uniform(0.5, 1, n).round(2)  # ties
    for threshold in (0.3, 0.5, 0.7):
        np.testing.assert_array_equal(B.nms(boxes, scores, threshold, mode),
                                      reference_nms(boxes, scores, threshold, mode))


def test_dense_nms_takes_the_loop_and_agrees():
    rng = np.random.default_rng(3)
    x = rng.uniform(0, 5, 400)
    boxes = np.stack([x, x, x + 30, x + 30], 1)
    scores = rng.uniform(0, 1, 400)
    assert np.maximum(B.x_sweep(boxes)[1] - np.arange(400) - 1, 0).sum() > B.DENSE_PAIRS * 400
    np.testing.assert_array_equal(B.nms(boxes, scores, 0.5), reference_nms(boxes, scores, 0.5, "union"))


def test_integral_image_int32_path_is_exact():
    img = np.random.default_rng(0).integers(0, 256, (61, 83, 3), dtype=np.uint8)
    np.testing.assert_array_equal(B.integral_image(img), cv2.integral(img, sdepth=cv2.CV_64F))


@pytest.mark.parametrize("size", [(40, 30), (33, 21), (7, 5)])
def test_area_resize_is_inter_area(size):
    img = np.random.default_rng(1).integers(0, 256, (90, 120, 3), dtype=np.uint8)
    out = B.area_resize(B.integral_image(img), *size)
    ref = cv2.resize(img.astype(np.float32), size, interpolation=cv2.INTER_AREA)
    assert out.shape == ref.shape == (size[1], size[0], 3)
    assert np.abs(out - ref).mean() < 0.5  # cell edges may move by 1/64 px
    flat = B.area_resize(B.integral_image(np.full((90, 120, 3), 9, np.uint8)), *size)
    np.testing.assert_allclose(flat, 9, atol=1e-3)


@pytest.mark.parametrize("backend", ["onnx", "opencv", "torch"])
def test_backends_find_the_same_faces(backend, astronaut, astronaut_detections):
    d = MTCNN(backend=backend, device="cpu").detect(astronaut)
    ref = astronaut_detections
    assert len(d.boxes) == len(ref.boxes)
    np.testing.assert_allclose(d.boxes, ref.boxes, atol=0.05)
    np.testing.assert_allclose(d.scores, ref.scores, atol=1e-4)
    np.testing.assert_allclose(d.landmarks, ref.landmarks, atol=0.05)


def test_unknown_backend_is_a_value_error():
    with pytest.raises(ValueError, match="backend"):
        MTCNN(backend="tensorflow")


@pytest.mark.parametrize("bad", [0, -1, 2.5, "8"])
def test_bad_batch_size_is_a_value_error(bad):
    with pytest.raises(ValueError, match="batch_size"):
        MTCNN(batch_size=bad)


def test_batched_detection_equals_one_by_one(detector, astronaut):
    images = [astronaut, np.zeros((50, 80, 3), np.uint8), fit_frame(astronaut, 320, 200), astronaut[::-1].copy()]
    singles = [detector.detect(im) for im in images]
    small_batches = MTCNN(batch_size=3, device="cpu").detect(images)
    for batch in (detector.detect(images), small_batches):
        assert len(batch) == len(images)
        for a, b in zip(singles, batch):
            np.testing.assert_allclose(a.boxes, b.boxes, atol=1e-3)
            np.testing.assert_allclose(a.scores, b.scores, atol=1e-5)


def test_stage_times_and_bench(detector, astronaut):
    frame = fit_frame(astronaut, 160, 120)
    assert frame.shape == (120, 160, 3)
    r = bench_mtcnn(detector, frame, warmup=1, repeats=3)
    assert r["median_ms"] > 0 and r["faces"] >= 1
    assert set(r["stages_ms"]) == set(STAGE_GROUPS)
    assert sum(r["stages_ms"].values()) <= r["median_ms"] * 1.5
    table = format_table([{"name": "x", **r}])
    assert "pyramid + P-Net" in table and "median ms" in table


def test_bench_cli_writes_json(astronaut_path, tmp_path, capsys):
    out = tmp_path / "bench.json"
    assert main(["bench", "--image", str(astronaut_path), "--size", "160x120", "--repeats", "2",
                 "--warmup", "1", "--threads", "1", "--json", str(out)]) == 0
    report = json.loads(out.read_text())
    assert report["size"] == [160, 120] and report["results"][0]["threads"] == 1
    assert "R-Net" in capsys.readouterr().out
    assert main(["bench", "--image", str(astronaut_path), "--size", "big"]) == 2


def test_workers_give_the_answers_of_one_thread(astronaut):
    """Levels and crops of one image, and the images of a list, spread over workers: same faces."""
    images = [astronaut, fit_frame(astronaut, 320, 200), np.zeros((40, 60, 3), np.uint8), astronaut[:, ::-1].copy(),
              fit_frame(astronaut, 200, 260), astronaut[::2, ::2].copy()]
    sequential = MTCNN(threads=1, device="cpu")
    assert sequential.workers == 1
    want = sequential.detect(images)
    assert sequential._executor is None  # one thread: no workers
    parallel = MTCNN(threads=3, device="cpu")
    assert parallel.workers == 3 and MTCNN(threads=3, backend="opencv", device="cpu").workers == 1
    for got in (parallel.detect(images), [parallel.detect(im) for im in images]):
        assert len(got) == len(images)
        for a, b in zip(want, got):
            np.testing.assert_allclose(a.boxes, b.boxes, atol=1e-3)
            np.testing.assert_allclose(a.scores, b.scores, atol=1e-5)
            np.testing.assert_allclose(a.landmarks, b.landmarks, atol=1e-3)
    assert parallel._executor is not None
    heard = []  # an observer hears of the images in order: the list runs on this thread
    parallel.run(images, observer=lambda stage, i, c, s: heard.append((stage, i, len(c.boxes))))
    assert [i for stage, i, _ in heard if stage == "final"] == list(range(len(images)))
    assert [n for stage, _, n in heard if stage == "final"] == [len(d.boxes) for d in want]


def test_levels_in_strips_give_the_same_faces(astronaut):
    """Pyramid levels resized and scored in strips (as large levels are), on one thread or dealt
    to workers: the very boxes, scores and landmarks of whole levels."""
    image = fit_frame(astronaut, 301, 227)
    whole = MTCNN(threads=1, device="cpu")
    whole.nets.strips = 0
    want = whole.detect(image)
    assert len(want.boxes)
    for threads in (1, 2):
        cut = MTCNN(threads=threads, device="cpu")
        cut.nets.strips = 50  # strips of a few rows on every level
        got = cut.detect(image)
        for a, b in zip(want, got):
            np.testing.assert_array_equal(a, b)


def test_balanced_groups_split_levels_by_area():
    from openmtcnn.detect.cascade import balanced_groups

    assert balanced_groups([], 2) == []
    assert balanced_groups([4.0, 2.0, 1.0, 0.5], 1) == [[0, 1, 2, 3]]
    groups = balanced_groups([0.36, 0.18, 0.09, 0.045, 0.02], 2)
    assert sorted(k for g in groups for k in g) == [0, 1, 2, 3, 4] and groups[0] == [0]


def test_nets_run_big_batches_in_chunks():
    from openmtcnn.runtime import Nets, make_nets

    nets = make_nets("published", threads=1)
    crops = np.random.default_rng(3).uniform(0, 255, (13, 3, 24, 24)).astype(np.float32)
    calls = []

    def counting(batch):
        calls.append(len(batch))
        return nets.nets["rnet"](batch)

    chunked = Nets({"rnet": counting}, {"rnet": "onnx"}, chunks={"rnet": 5})
    got = chunked("rnet", crops)
    assert calls == [5, 5, 3]
    for g, w in zip(got, nets.nets["rnet"](crops)):
        assert g.shape == w.shape
        np.testing.assert_allclose(g, w, atol=1e-5)
