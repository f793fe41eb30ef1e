"""``openmtcnn batch``: sharded Parquet rows, manifests, bad files, resume after SIGKILL, Ray equal to local."""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

pa = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")

from openmtcnn.batch import BatchConfig, BatchError, list_inputs, run_batch  # noqa: E402
from openmtcnn.cli.main import main  # noqa: E402

SETTINGS = {"workers": 1, "shard_size": 4, "batch_size": 2, "device": "cpu", "progress": False}
CLI_SETTINGS = ["--workers", "1", "--shard-size", "4", "--batch-size", "2", "--device", "cpu"]
BAD = {"corrupt.jpg": b"\xff\xd8\xff\xe0 a JPEG header, then nothing", "empty.png": b"",
       "notes.jpg": b"a text file with an image's name\n"}


@pytest.fixture(scope="module")
def photos(tmp_path_factory, _astronaut_rgb) -> Path:
    """40 small pictures (the sample resized, cropped, flipped) in two folders, and three bad files."""
    root = tmp_path_factory.mktemp("photos")
    bgr = cv2.cvtColor(_astronaut_rgb, cv2.COLOR_RGB2BGR)
    for k in range(40):
        side = 120 + 4 * k
        image = cv2.resize(bgr[k % 5 * 8:, :512 - k % 3 * 16], (side, side * 3 // 4 + k % 7 * 8))
        image = image[:, ::-1] if k % 2 else image
        folder = root / ("a" if k < 20 else "b/deeper")
        folder.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(folder / f"img{k:02d}{'.jpg' if k % 3 else '.png'}"), image)
    for name, data in BAD.items():
        (root / "a" / name).write_bytes(data)
    return root


@pytest.fixture(scope="module")
def reference(photos, tmp_path_factory) -> tuple[Path, dict]:
    """One uninterrupted local run over the photos: its folder and its summary."""
    out = tmp_path_factory.mktemp("reference")
    return out, run_batch([photos], out, BatchConfig(**SETTINGS))


def read_rows(out: Path) -> pa.Table:
    """All the shards, in order."""
    return pa.concat_tables([pq.read_table(p) for p in sorted(out.glob("part-*.parquet"))])


def stamps(out: Path) -> dict[str, tuple[int, int]]:
    """(inode, mtime) of each shard: a rewritten shard gets new ones."""
    return {p.name: (p.stat().st_ino, p.stat().st_mtime_ns) for p in out.glob("part-*.parquet")}


def test_rows_errors_shards_and_metadata(photos, reference, detector):
    out, summary = reference
    files = sorted(str(p) for p in photos.rglob("*") if p.is_file())
    assert summary["images"] == summary["total"] == 43 and summary["already_done"] == 0
    assert summary["errors"] == 3 and summary["shards"] == summary["shards_written"] == 11
    assert sorted(p.name for p in out.glob("part-*.parquet")) == [f"part-{k:05d}.parquet" for k in range(11)]
    rows = read_rows(out).to_pylist()
    assert [r["path"] for r in rows] == files  # input order, one row each
    assert set(rows[0]) == {"path", "width", "height", "boxes", "scores", "landmarks", "error"}
    bad = {Path(r["path"]).name: r for r in rows if r["error"] is not None}
    assert set(bad) == set(BAD)
    assert all(r["width"] is None and r["height"] is None and r["boxes"] == r["scores"] == r["landmarks"] == []
               for r in bad.values())
    good = [r for r in rows if r["error"] is None]
    assert sum(len(r["scores"]) for r in good) == summary["faces"] > 0
    for r in good:
        n = len(r["scores"])
        assert len(r["boxes"]) == 4 * n and len(r["landmarks"]) == 10 * n
        image = cv2.imread(r["path"])
        assert (r["width"], r["height"]) == (image.shape[1], image.shape[0])
    some = next(r for r in good[5:] if r["scores"])
    expect = detector.detect(some["path"])  # the rows hold the detector's answers
    np.testing.assert_allclose(np.reshape(some["boxes"], (-1, 4)), expect.boxes, atol=1e-3)
    np.testing.assert_allclose(np.reshape(some["landmarks"], (-1, 5, 2)), expect.landmarks, atol=1e-3)
    meta = json.loads(pq.read_schema(out / "part-00003.parquet").metadata[b"openmtcnn"])
    assert meta["detector"] == {"min_face": 20, "scale_factor": 0.709, "thresholds": [0.6, 0.7, 0.7],
                                "weights": "published"}
    assert meta["shard"] == 3 and meta["shards"] == 11 and meta["version"]
    assert pq.read_schema(out / "part-00000.parquet").field("boxes").type == pa.list_(pa.float32())


def test_finished_run_rerun_does_nothing(photos, reference):
    out, _ = reference
    before = stamps(out)
    again = run_batch([photos], out, BatchConfig(**SETTINGS))
    assert again["images"] == again["shards_written"] == 0 and again["already_done"] == 43
    assert stamps(out) == before


def test_damaged_shard_is_redone(photos, reference, tmp_path):
    out, _ = reference
    copy = tmp_path / "out"
    copy.mkdir()
    for p in out.iterdir():
        (copy / p.name).write_bytes(p.read_bytes())
    data = (copy / "part-00002.parquet").read_bytes()
    (copy / "part-00002.parquet").write_bytes(data[:len(data) // 2])  # truncated
    (copy / ".part-00005.parquet.x1y2z3.parquet").write_bytes(b"a killed write")
    before = stamps(copy)
    summary = run_batch([photos], copy, BatchConfig(**SETTINGS))
    assert summary["images"] == 4 and summary["shards_written"] == 1
    after = stamps(copy)
    assert [k for k in after if after[k] != before[k]] == ["part-00002.parquet"]
    assert not list(copy.glob(".part-*"))
    assert read_rows(copy).equals(read_rows(out))


def test_manifests(photos, tmp_path):
    files = sorted(str(p) for p in photos.rglob("*.jpg") if p.name not in BAD)[:6]
    (tmp_path / "list.txt").write_text("# photos\n\n" + "\n".join(os.path.relpath(f, tmp_path) for f in files) + "\n")
    (tmp_path / "list.csv").write_text("path,label\n" + "".join(f"{f},x\n" for f in files))
    pq.write_table(pa.table({"path": files[::-1]}), tmp_path / "list.parquet")
    for name in ("list.txt", "list.csv", "list.parquet"):
        assert list_inputs([tmp_path / name]) == files, name
    assert list_inputs([tmp_path / "list.csv", files[0], photos / "a"]) == sorted(
        set(files) | {str(p) for p in (photos / "a").glob("*.*")})  # no repeats
    (tmp_path / "more.csv").write_text(f"path\n{files[0]}\n{tmp_path / 'missing.jpg'}\n")
    summary = run_batch([tmp_path / "more.csv"], tmp_path / "out", BatchConfig(**SETTINGS))
    rows = read_rows(tmp_path / "out").to_pylist()
    assert summary["errors"] == 1 and [r["path"] for r in rows] == [files[0], str(tmp_path / "missing.jpg")]
    assert "no such image file" in rows[1]["error"] and rows[0]["error"] is None and rows[0]["scores"]
    (tmp_path / "nopath.csv").write_text("file\na.jpg\n")
    with pytest.raises(BatchError, match="'path' column"):
        list_inputs([tmp_path / "nopath.csv"])


def test_clear_errors_before_any_work(photos, reference, tmp_path, capsys):
    job = (reference[0] / "_job.json").read_text()
    a_file = tmp_path / "file"
    a_file.write_text("x")
    cases = [(["batch", str(tmp_path / "missing.txt"), "--out", str(tmp_path / "o")], "input not found"),
             (["batch", str(photos), "--out", str(a_file)], "is an existing file"),
             (["batch", str(photos), "--out", str(a_file / "sub")], "cannot be written"),
             (["batch", str(photos), "--out", str(reference[0]), "--min-face", "30"], "another job's output"),
             (["batch", str(tmp_path), "--out", str(tmp_path / "o2")], "no images found"),
             (["batch", str(photos), "--out", str(tmp_path / "o3"), "--workers", "0"], "--workers must be"),
             (["batch", str(photos), "--out", str(tmp_path / "o4"), "--address", "auto"], "--engine ray")]
    for argv, message in cases:
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert message in err and "Traceback" not in err, (argv, err)
    assert not (tmp_path / "o").exists() and (reference[0] / "_job.json").read_text() == job


def test_resume_after_sigkill_matches_an_uninterrupted_run(repo_root, photos, reference, tmp_path):
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "openmtcnn.cli.main", "batch", str(photos), "--out", str(out), *CLI_SETTINGS]
    env = {**os.environ, "PYTHONPATH": str(repo_root) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    run = subprocess.Popen(cmd, cwd=repo_root, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           start_new_session=True)
    deadline = time.monotonic() + 90
    while not (out / "part-00001.parquet").exists() and run.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
    if run.poll() is None:
        os.killpg(run.pid, signal.SIGKILL)  # the job and its workers, as kill -9 of the whole run
    _, err = run.communicate()
    assert run.returncode == -signal.SIGKILL, f"the run ended before it could be killed: {err.decode()}"
    before = stamps(out)
    assert 2 <= len(before) < 11, sorted(before)
    done = subprocess.run(cmd, cwd=repo_root, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr and re.search(r"\d+ images in .*, \d+ faces, \d+ errors", done.stdout)
    assert f"({4 * len(before)} were done before)" in done.stdout
    after = stamps(out)
    assert all(after[k] == v for k, v in before.items())  # shards already written were not redone
    rows = read_rows(out)
    assert rows.num_rows == 43 and len(set(rows.column("path").to_pylist())) == 43
    assert rows.equals(read_rows(reference[0]))


def test_ray_engine_gives_the_same_rows(photos, reference, tmp_path):
    pytest.importorskip("ray.data")
    summary = run_batch([photos], tmp_path / "ray", BatchConfig(**{**SETTINGS, "engine": "ray", "workers": 2}))
    assert summary["images"] == 43 and summary["errors"] == 3 and summary["engine"] == "ray"
    assert read_rows(tmp_path / "ray").equals(read_rows(reference[0]))
    meta = [pq.read_schema(p).metadata for p in sorted((tmp_path / "ray").glob("part-*.parquet"))]
    assert meta == [pq.read_schema(p).metadata for p in sorted(reference[0].glob("part-*.parquet"))]
