"""The ``openmtcnn`` command line: detect on images, folders and videos; eval argument checks."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from _helpers import box_iou

from openmtcnn.cli.main import main


def run_cli(repo_root: Path, *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(repo_root) + os.pathsep + env.get("PYTHONPATH", "")
    return subprocess.run([sys.executable, "-m", "openmtcnn.cli.main", *args], cwd=cwd or repo_root,
                          env=env, capture_output=True, text=True, timeout=120)


def read_rgb(path: Path) -> np.ndarray:
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    assert bgr is not None, f"not a readable image: {path}"
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def test_detect_one_image_as_subprocess(repo_root, astronaut_path, astronaut_face, tmp_path):
    out, js = tmp_path / "out", tmp_path / "res" / "faces.json"
    proc = run_cli(repo_root, "detect", str(astronaut_path), "--out", str(out), "--json", str(js))
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    assert "astronaut" in proc.stdout and "face" in proc.stdout
    annotated = out / "astronaut.png"  # the input's format is kept
    assert annotated.is_file()
    img = read_rgb(annotated)
    assert img.shape == (512, 512, 3)
    # the annotation changed the picture
    assert np.abs(img.astype(int) - read_rgb(astronaut_path).astype(int)).max() > 100
    results = json.loads(js.read_text())
    assert list(results) == [str(astronaut_path)]
    faces = results[str(astronaut_path)]
    assert len(faces) >= 1
    x, y, w, h = faces[0]["box"]
    assert box_iou([x, y, x + w, y + h], astronaut_face) > 0.7
    assert set(faces[0]["keypoints"]) == {"left_eye", "right_eye", "nose", "mouth_left", "mouth_right"}


def test_folder_with_a_corrupt_file(astronaut_path, tmp_path, capsys):
    src = tmp_path / "photos"
    (src / "sub").mkdir(parents=True)
    shutil.copy(astronaut_path, src / "a.png")
    small = cv2.resize(cv2.imread(str(astronaut_path)), (256, 256), interpolation=cv2.INTER_AREA)
    cv2.imwrite(str(src / "sub" / "b.jpg"), small)
    (src / "sub" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 definitely not a jpeg")
    (src / "notes.txt").write_text("not an image and not picked up\n")
    out, js = tmp_path / "out", tmp_path / "r.json"

    code = main(["detect", str(src), "--out", str(out), "--json", str(js), "--quiet"])
    err = capsys.readouterr().err
    assert code == 1
    assert "broken.jpg" in err
    assert "Traceback" not in err
    results = json.loads(js.read_text())
    good = {str(src / "a.png"), str(src / "sub" / "b.jpg")}
    assert set(results) == good
    assert all(len(faces) >= 1 for faces in results.values())
    annotated = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    assert len(annotated) == 2
    names = {Path(p).stem for p in annotated}
    assert names == {"a", "b"}
    assert any("sub/" in p for p in annotated), "the subfolder layout is kept under --out"
    for p in out.rglob("*"):
        if p.is_file():
            read_rgb(p)


def test_folder_given_as_dotdot_writes_only_under_out(astronaut_path, tmp_path, monkeypatch):
    """``openmtcnn detect .. --out OUT`` must not write annotated images outside OUT."""
    photos = tmp_path / "work" / "photos"
    (photos / "here").mkdir(parents=True)
    shutil.copy(astronaut_path, photos / "a.png")
    monkeypatch.chdir(photos / "here")
    out = tmp_path / "out"
    code = main(["detect", "..", "--out", str(out), "--quiet"])
    assert code == 0
    written = sorted(p for p in tmp_path.rglob("*.png") if p != photos / "a.png")
    assert written, "an annotated image is written"
    outside = [str(p) for p in written if out not in p.parents]
    assert not outside, f"annotated images written outside --out: {outside}"


def test_inputs_with_the_same_stem_get_separate_annotated_images(astronaut_path, tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    shutil.copy(astronaut_path, src / "face.png")
    cv2.imwrite(str(src / "face.jpg"), cv2.imread(str(astronaut_path))[:300])
    out = tmp_path / "out"
    assert main(["detect", str(src), "--out", str(out), "--quiet"]) == 0
    files = [p for p in out.rglob("*") if p.is_file()]
    assert len(files) == 2, f"one annotated image per input, got {files}"


def test_files_with_the_same_name_in_different_folders(astronaut_path, tmp_path):
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        shutil.copy(astronaut_path, tmp_path / name / "img.png")
    out = tmp_path / "out"
    assert main(["detect", str(tmp_path / "a" / "img.png"), str(tmp_path / "b" / "img.png"),
                 "--out", str(out), "--quiet"]) == 0
    files = [p for p in out.rglob("*") if p.is_file()]
    assert len(files) == 2, f"one annotated image per input, got {files}"


def test_unavailable_device_is_a_clean_error(astronaut_path, capsys):
    from openmtcnn.runtime import choose_engine

    try:
        choose_engine("auto", "cuda")
        pytest.skip("a GPU engine is available here")
    except ValueError:
        pass
    try:
        code = main(["detect", str(astronaut_path), "--device", "cuda", "--quiet"])
    except RuntimeError as e:
        pytest.fail(f"--device cuda without CUDA escapes as a traceback: RuntimeError: {e}")
    assert code != 0
    assert "CUDA" in capsys.readouterr().err


def test_missing_path_fails_without_traceback(repo_root, tmp_path):
    missing = tmp_path / "no_such_picture.jpg"
    proc = run_cli(repo_root, "detect", str(missing))
    assert proc.returncode != 0
    assert "no_such_picture.jpg" in proc.stderr
    assert "Traceback" not in proc.stderr and "Traceback" not in proc.stdout


def test_empty_folder_is_a_usage_error(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    code = main(["detect", str(tmp_path / "empty")])
    assert code == 2
    assert "no images" in capsys.readouterr().err


def test_detector_options(astronaut_path, astronaut_face, tmp_path, capsys):
    js = tmp_path / "a.json"
    code = main(["detect", str(astronaut_path), "--json", str(js), "--quiet",
                 "--thresholds", "0.5", "0.6", "0.8", "--min-face", "40", "--scale-factor", "0.6",
                 "--threads", "1"])
    assert code == 0
    faces = json.loads(js.read_text())[str(astronaut_path)]
    assert faces
    x, y, w, h = faces[0]["box"]
    assert box_iou([x, y, x + w, y + h], astronaut_face) > 0.7
    assert capsys.readouterr().out == ""  # --quiet

    code = main(["detect", str(astronaut_path), "--json", str(js), "--quiet", "--thresholds", "0.6", "0.7", "1.0"])
    assert code == 0
    assert json.loads(js.read_text())[str(astronaut_path)] == []


def test_bad_detector_options(astronaut_path, capsys):
    with pytest.raises(SystemExit) as e:  # argparse: three values needed
        main(["detect", str(astronaut_path), "--thresholds", "0.5", "0.6"])
    assert e.value.code == 2
    capsys.readouterr()
    code = main(["detect", str(astronaut_path), "--min-face", "0"])
    assert code != 0
    assert "min_face_size" in capsys.readouterr().err


def write_video(path: Path, frames: list[np.ndarray], fps: float = 5.0) -> None:
    h, w = frames[0].shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (w, h))
    assert writer.isOpened(), "OpenCV cannot write mp4v here"
    for f in frames:
        writer.write(cv2.cvtColor(f, cv2.COLOR_RGB2BGR))
    writer.release()


def test_video(astronaut, tmp_path, capsys):
    face = cv2.resize(astronaut, (256, 256), interpolation=cv2.INTER_AREA)
    grey = np.full_like(face, 128)
    frames = [face, grey, face, grey, face]
    video = tmp_path / "clip.mp4"
    write_video(video, frames)
    out, js = tmp_path / "out", tmp_path / "v.json"

    code = main(["detect", str(video), "--out", str(out), "--json", str(js), "--quiet"])
    assert code == 0, capsys.readouterr().err
    annotated, lines = out / "clip.mp4", out / "clip.jsonl"
    assert annotated.is_file() and lines.is_file()
    records = [json.loads(ln) for ln in lines.read_text().splitlines() if ln.strip()]
    assert [r["frame"] for r in records] == list(range(5))
    for r, frame in zip(records, frames):
        assert (len(r["faces"]) >= 1) == (frame is face), r
    assert records[0]["time"] == 0 and records[1]["time"] > 0
    per_frame = json.loads(js.read_text())[str(video)]
    assert len(per_frame) == 5 and per_frame == [r["faces"] for r in records]

    cap = cv2.VideoCapture(str(annotated))
    n = 0
    while True:
        ok, f = cap.read()
        if not ok:
            break
        assert f.shape == (256, 256, 3)
        n += 1
    cap.release()
    assert n == 5


def test_corrupt_video_fails_cleanly(tmp_path, capsys):
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"\0\0\0\x18ftypmp42 and then nothing useful")
    code = main(["detect", str(bad), "--out", str(tmp_path / "out"), "--quiet"])
    assert code == 1
    assert "bad.mp4" in capsys.readouterr().err


def test_eval_widerface_missing_folders(tmp_path, capsys):
    code = main(["eval", "widerface", "--images", str(tmp_path / "nope"), "--gt", str(tmp_path / "nada"),
                 "--out", str(tmp_path / "out")])
    assert code == 2
    err = capsys.readouterr().err
    assert "not found" in err and "nope" in err
    assert not (tmp_path / "out").exists()


def test_eval_widerface_missing_folders_subprocess(repo_root, tmp_path):
    proc = run_cli(repo_root, "eval", "widerface", "--images", str(tmp_path / "x"), "--gt", str(tmp_path / "y"),
                   "--out", str(tmp_path / "o"))
    assert proc.returncode == 2
    assert "not found" in proc.stderr and "Traceback" not in proc.stderr


def test_version_and_help(capsys):
    with pytest.raises(SystemExit) as e:
        main(["--version"])
    assert e.value.code == 0
    assert "openmtcnn" in capsys.readouterr().out
    with pytest.raises(SystemExit) as e:
        main([])
    assert e.value.code == 2
