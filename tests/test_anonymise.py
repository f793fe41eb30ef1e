"""Anonymisation: the mask operations, the face tracker, and ``openmtcnn blur`` on real photos and videos.

The videos are made here with PyAV from the bundled sample picture: a pan and zoom over it, so
the face's box is known in every frame, with a 440 Hz tone on an AAC audio track.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import cv2
import numpy as np
import pytest
from _helpers import box_iou

import openmtcnn
from openmtcnn.anonymise.mask import BlurConfig, grow, mask_faces
from openmtcnn.anonymise.sequence import FrameMasker, SequenceConfig, edge_strips
from openmtcnn.anonymise.track import TrackConfig, Tracks, apply_motion, estimate_motion, greedy_match, to_state
from openmtcnn.cli.main import main
from openmtcnn.detect import Detections

try:
    import av
except ImportError:  # the image and tracker tests still run
    av = None
needs_av = pytest.mark.skipif(av is None, reason="PyAV is needed for the video tests: pip install 'openmtcnn[video]'")

SIZE, FPS, FRAMES, SAMPLE_RATE = (320, 240), 30, 40, 44100
AAC_FRAME = 1024  # samples in one AAC frame: the audio may differ by at most this


# ---- synthetic media ------------------------------------------------------------------------------

def pan_zoom(n: int) -> np.ndarray:
    """(n, 3): x0, y0 and width of the 4:3 window over the 512 x 512 picture in each frame; the face stays inside."""
    t = np.linspace(0, 1, n)
    return np.stack([20 + 40 * t, 10 * t, 440 - 120 * t], axis=1)


def render(picture: np.ndarray, face: np.ndarray, n: int) -> tuple[list[np.ndarray], np.ndarray]:
    """The frames of the pan and zoom, and the face's box in each."""
    frames, boxes = [], []
    for x0, y0, width in pan_zoom(n):
        s = SIZE[0] / width
        frames.append(cv2.warpAffine(picture, np.array([[s, 0, -x0 * s], [0, s, -y0 * s]]), SIZE,
                                     flags=cv2.INTER_AREA))
        boxes.append((face - [x0, y0, x0, y0]) * s)
    return frames, np.array(boxes)


def write_clip(path: Path, frames: list[np.ndarray], rotation: int = 0, options: dict | None = None) -> None:
    """H.264 video at FPS with an AAC tone as long as the video; frames stored turned by -rotation when asked."""
    out = av.open(str(path), "w", options=options or {})
    h, w = np.rot90(frames[0], -rotation // 90).shape[:2]
    video = out.add_stream("libx264", rate=FPS)
    video.width, video.height, video.pix_fmt = w, h, "yuv420p"
    if rotation:
        video.set_display_rotation(rotation)
    audio = out.add_stream("aac", rate=SAMPLE_RATE)
    audio.layout = "mono"
    out.metadata["title"] = "pan and zoom"
    for i, rgb in enumerate(frames):
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(np.rot90(rgb, -rotation // 90)), format="rgb24")
        frame.pts, frame.time_base = i, Fraction(1, FPS)
        out.mux(video.encode(frame))
    out.mux(video.encode(None))
    tone = (0.3 * np.sin(2 * np.pi * 440 * np.arange(SAMPLE_RATE * len(frames) // FPS) / SAMPLE_RATE))
    for k in range(0, len(tone), AAC_FRAME):
        frame = av.AudioFrame.from_ndarray(tone[None, k:k + AAC_FRAME].astype(np.float32), format="flt", layout="mono")
        frame.sample_rate, frame.pts, frame.time_base = SAMPLE_RATE, k, Fraction(1, SAMPLE_RATE)
        out.mux(audio.encode(frame))
    out.mux(audio.encode(None))
    out.close()


def decode(path: Path) -> list[np.ndarray]:
    """Every frame of a video, upright (as a player shows it), RGB."""
    with av.open(str(path)) as c:
        return [np.rot90(f.to_ndarray(format="rgb24"), round(f.rotation / 90)) for f in c.decode(video=0)]


def probe(path: Path) -> dict:
    """What must survive the round trip: frame count and rate, audio duration, metadata, rotation."""
    with av.open(str(path)) as c:
        video, audio = c.streams.video[0], c.streams.audio[0]
        first = next(c.decode(video=0))
        return {"frames": video.frames, "rate": Fraction(video.average_rate), "codec": video.codec_context.name,
                "audio_seconds": float(audio.duration * audio.time_base), "audio_codec": audio.codec_context.name,
                "title": c.metadata.get("title"), "rotation": first.rotation}


def sharpness(rgb: np.ndarray) -> float:
    """Variance of the Laplacian: high where there are edges (eyes, mouth), near zero on a blur."""
    return float(cv2.Laplacian(cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY), cv2.CV_64F).var())


def inner(box: np.ndarray, share: float = 0.6) -> tuple[slice, slice]:
    """Rows and columns of the central ``share`` of a box: inside the ellipse mask whatever the detector's box."""
    (x1, y1, x2, y2), = np.rint(grow(box[None], share)).astype(int)
    return slice(y1, y2), slice(x1, x2)


@pytest.fixture(scope="module")
def clip(tmp_path_factory, _astronaut_rgb, astronaut_face):
    """A pan and zoom over the sample picture with a tone: (path, decoded frames, face box per frame)."""
    frames, boxes = render(_astronaut_rgb, astronaut_face, FRAMES)
    path = tmp_path_factory.mktemp("clip") / "pan.mp4"
    write_clip(path, frames)
    return path, decode(path), boxes


@pytest.fixture(scope="module")
def blurred(clip, tmp_path_factory):
    """``openmtcnn blur`` on the clip with the defaults: (exit code, output path, --boxes lines)."""
    out = tmp_path_factory.mktemp("blurred")
    code = main(["blur", str(clip[0]), "--out", str(out / "masked"), "--boxes", str(out / "boxes.jsonl"), "--quiet"])
    lines = [json.loads(line) for line in (out / "boxes.jsonl").read_text().splitlines()]
    return code, out / "masked" / "pan.mp4", lines


def assert_face_masked(original: list[np.ndarray], masked: list[np.ndarray], boxes: np.ndarray) -> None:
    """In every frame the face's centre has lost its detail and changed."""
    for i, (a, b, box) in enumerate(zip(original, masked, boxes)):
        rows, cols = inner(box)
        assert sharpness(b[rows, cols]) < 0.1 * sharpness(a[rows, cols]), f"frame {i}: face detail left"
        assert np.abs(a[rows, cols].astype(int) - b[rows, cols]).mean() > 5, f"frame {i}: face unchanged"


# ---- videos ----------------------------------------------------------------------------------------

@needs_av
def test_video_keeps_frames_rate_audio_and_metadata(clip, blurred):
    code, out, _ = blurred
    assert code == 0
    before, after = probe(clip[0]), probe(out)
    assert after["frames"] == before["frames"] == FRAMES
    assert len(decode(out)) == FRAMES
    assert after["rate"] == before["rate"] == FPS
    assert abs(after["audio_seconds"] - before["audio_seconds"]) <= AAC_FRAME / SAMPLE_RATE
    assert abs(after["audio_seconds"] - FRAMES / FPS) <= 2 * AAC_FRAME / SAMPLE_RATE
    assert (after["codec"], after["audio_codec"], after["title"]) == ("h264", "aac", "pan and zoom")
    assert not list(out.parent.glob(".*partial*")), "no temporary file left behind"


@needs_av
def test_video_face_is_masked_in_every_frame(clip, blurred):
    _, frames, boxes = clip
    assert_face_masked(frames, decode(blurred[1]), boxes)


@needs_av
def test_video_outside_the_masked_boxes_is_untouched(clip, blurred):
    """Away from every box in --boxes (grown by the mask scale, and a margin for the codec's blocks) nothing changes."""
    for i, (a, b, line) in enumerate(zip(clip[1], decode(blurred[1]), blurred[2])):
        away = np.ones(a.shape[:2], bool)
        for x1, y1, x2, y2 in np.rint(grow(np.array(line["boxes"]), 1.3) + [-16, -16, 16, 16]).astype(int):
            away[max(y1, 0):max(y2, 0), max(x1, 0):max(x2, 0)] = False
        assert away.mean() > 0.3 and np.abs(a[away].astype(int) - b[away]).mean() < 3, f"frame {i}"


@needs_av
def test_boxes_file_has_one_line_per_frame(clip, blurred):
    lines = blurred[2]
    assert [line["frame"] for line in lines] == list(range(FRAMES))
    assert all(line["file"] == str(clip[0]) for line in lines)
    for line, truth in zip(lines, clip[2]):
        assert len(line["boxes"]) == len(line["scores"]) == len(line["tracks"])
        assert max(box_iou(b, truth) for b in line["boxes"]) > 0.6
    assert lines[10]["time"] == pytest.approx(10 / FPS, abs=1e-3)


@needs_av
def test_detect_every_third_frame_still_masks_every_frame(clip, tmp_path):
    code = main(["blur", str(clip[0]), "--out", str(tmp_path), "--detect-every", "3", "--mode", "solid",
                 "--shape", "box", "--quiet"])
    assert code == 0
    masked = decode(tmp_path / "pan.mp4")
    assert len(masked) == FRAMES
    for i, (frame, box) in enumerate(zip(masked, clip[2])):
        rows, cols = inner(box, 0.9)
        assert frame[rows, cols].max() < 40, f"frame {i}: face not covered by the solid mask"


@needs_av
def test_rotated_video_is_masked_upright_and_keeps_its_rotation(_astronaut_rgb, astronaut_face, tmp_path):
    """A phone video stored sideways: the faces are found on the upright picture, the rotation is kept."""
    frames, boxes = render(_astronaut_rgb, astronaut_face, 8)
    write_clip(tmp_path / "phone.mp4", frames, rotation=90)
    assert main(["blur", str(tmp_path / "phone.mp4"), "--out", str(tmp_path / "out"), "--quiet"]) == 0
    out = tmp_path / "out" / "phone.mp4"
    assert probe(out)["rotation"] == probe(tmp_path / "phone.mp4")["rotation"] == 90
    assert_face_masked(decode(tmp_path / "phone.mp4"), decode(out), boxes)


@needs_av
def test_truncated_video_fails_clearly_and_keeps_the_frames_read(clip, tmp_path, capsys):
    _, frames, _ = clip
    whole = tmp_path / "whole.mp4"
    write_clip(whole, frames, options={"movflags": "faststart"})  # index first: the cut keeps it readable
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(whole.read_bytes()[:whole.stat().st_size * 6 // 10])
    assert main(["blur", str(cut), "--out", str(tmp_path / "out"), "--quiet"]) == 1
    err = capsys.readouterr().err
    assert str(cut) in err and "truncated" in err and "Traceback" not in err
    kept = decode(tmp_path / "out" / "cut.mp4")  # playable: every frame decodes
    assert 0 < len(kept) < FRAMES and f"the {len(kept)} frames read are in" in err


@needs_av
def test_unreadable_and_empty_videos_are_clear_value_errors(tmp_path):
    from openmtcnn.anonymise.video import edit_video

    index_last = tmp_path / "index_last.mp4"  # a plain MP4 cut short loses its index (at the end)
    write_clip(tmp_path / "full.mp4", [np.zeros((48, 64, 3), np.uint8)] * 10)
    index_last.write_bytes((tmp_path / "full.mp4").read_bytes()[:2000])
    empty = tmp_path / "empty.mp4"  # a video stream without a single frame
    out = av.open(str(empty), "w")
    stream = out.add_stream("libx264", rate=FPS)
    stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
    out.start_encoding()
    out.close()
    for path, says in ((index_last, "could not open"), (empty, "no video frames")):
        with pytest.raises(ValueError, match=says) as e:
            edit_video(path, tmp_path / "out" / path.name, lambda i, t, rgb: rgb, show_progress=False)
        assert str(path) in str(e.value)
        assert not (tmp_path / "out" / path.name).exists()
    assert not (tmp_path / "out").exists()


# ---- photos ----------------------------------------------------------------------------------------

def test_photo_folder_with_bad_files(astronaut_path, _astronaut_rgb, astronaut_face, tmp_path, capsys):
    src = tmp_path / "photos"
    (src / "sub").mkdir(parents=True)
    shutil.copy(astronaut_path, src / "a.png")
    cv2.imwrite(str(src / "sub" / "b.jpg"), cv2.cvtColor(_astronaut_rgb, cv2.COLOR_RGB2BGR))
    (src / "sub" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not a jpeg at all")
    (src / "notes.txt").write_text("not picked up\n")
    out, boxes = tmp_path / "out", tmp_path / "boxes.jsonl"
    code = main(["blur", str(src), "--out", str(out), "--boxes", str(boxes), "--mode", "mosaic", "--quiet"])
    err = capsys.readouterr().err
    assert code == 1
    assert "broken.jpg" in err and "1 of 3 inputs failed" in err and "Traceback" not in err
    written = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    assert written == ["photos/a.png", "photos/sub/b.jpg"]  # names and formats kept
    masked = cv2.cvtColor(cv2.imread(str(out / "photos" / "a.png")), cv2.COLOR_BGR2RGB)
    rows, cols = inner(astronaut_face)
    assert len(np.unique(masked[rows, cols].reshape(-1, 3), axis=0)) < 40  # a few mosaic blocks
    np.testing.assert_array_equal(masked[300:], _astronaut_rgb[300:])  # PNG: untouched pixels stay exact
    lines = [json.loads(line) for line in boxes.read_text().splitlines()]
    assert sorted(Path(line["file"]).name for line in lines) == ["a.png", "b.jpg"]
    assert all(line["frame"] == 0 and line["boxes"] for line in lines)


def test_mode_none_writes_only_the_boxes(astronaut_path, tmp_path, capsys):
    assert main(["blur", str(astronaut_path), "--mode", "none", "--out", str(tmp_path / "out")]) == 2
    assert "--boxes" in capsys.readouterr().err
    assert main(["blur", str(astronaut_path), "--mode", "none", "--boxes", str(tmp_path / "b.jsonl"), "--quiet"]) == 0
    assert not (tmp_path / "out").exists()
    assert json.loads((tmp_path / "b.jsonl").read_text())["boxes"]


def test_usage_errors_are_messages(astronaut_path, tmp_path, capsys):
    cases = [(["--mask-scale", "0"], "--mask-scale"), (["--detect-every", "0"], "--detect-every"),
             (["--keep", "-1"], "--keep"), ([], "--out")]
    for extra, says in cases:
        out = [] if not extra else ["--out", str(tmp_path / "o")]
        assert main(["blur", str(astronaut_path), *out, *extra]) == 2
        err = capsys.readouterr().err
        assert says in err and "Traceback" not in err
    assert main(["blur", str(astronaut_path), "--out", str(astronaut_path.parent)]) == 2  # would overwrite
    assert "overwrite" in capsys.readouterr().err


# ---- the mask operations ---------------------------------------------------------------------------

@pytest.mark.parametrize("mode", ["blur", "mosaic", "solid"])
@pytest.mark.parametrize("shape", ["ellipse", "box"])
def test_mask_changes_only_the_grown_box(astronaut, astronaut_face, mode, shape):
    before = astronaut.copy()
    out = openmtcnn.anonymise(astronaut, astronaut_face[None], mode=mode, shape=shape)
    np.testing.assert_array_equal(astronaut, before)  # the input is left alone
    assert out.dtype == np.uint8 and out.shape == astronaut.shape
    changed = np.abs(out.astype(int) - astronaut).max(axis=2) > 0
    ys, xs = np.nonzero(changed)
    (gx1, gy1, gx2, gy2), = grow(astronaut_face[None], 1.3)
    assert xs.min() >= np.floor(gx1) and xs.max() < np.ceil(gx2)
    assert ys.min() >= np.floor(gy1) and ys.max() < np.ceil(gy2)
    rows, cols = inner(astronaut_face)
    assert changed[rows, cols].mean() > 0.9
    corner = changed[int(gy1):int(gy1) + 6, int(gx1):int(gx1) + 6]
    assert corner.any() if shape == "box" else not corner.any()  # the ellipse leaves the box's corners


def test_mosaic_is_blocks_and_solid_is_the_colour(astronaut, astronaut_face):
    box = astronaut_face[None]
    mosaic = mask_faces(astronaut, box, BlurConfig(mode="mosaic", shape="box", cells=4))
    (x1, y1, x2, y2), = np.rint(grow(box, 1.3)).astype(int)
    region = mosaic[y1 + 2:y2 - 2, x1 + 2:x2 - 2].reshape(-1, 3)
    assert len(np.unique(region, axis=0)) <= 25  # at most (cells + 1)^2 blocks meet the region
    solid = mask_faces(astronaut, box, BlurConfig(mode="solid", shape="box", colour=(255, 0, 0)))
    assert (solid[y1 + 1:y2 - 1, x1 + 1:x2 - 1] == [255, 0, 0]).all()
    blur = mask_faces(astronaut, box, BlurConfig(mode="blur"))
    rows, cols = inner(astronaut_face)
    assert sharpness(blur[rows, cols]) < 0.05 * sharpness(astronaut[rows, cols])


def test_mask_scale_grows_the_masked_area(astronaut, astronaut_face):
    def masked_pixels(scale: float) -> int:
        out = openmtcnn.anonymise(astronaut, astronaut_face[None], mode="solid", shape="box", mask_scale=scale)
        return int((np.abs(out.astype(int) - astronaut).max(axis=2) > 0).sum())

    w, h = astronaut_face[2:] - astronaut_face[:2]
    assert masked_pixels(1.0) == pytest.approx(w * h, rel=0.05)
    assert masked_pixels(1.5) == pytest.approx(1.5**2 * w * h, rel=0.05)


def test_boxes_partly_or_wholly_outside_the_image(astronaut):
    boxes = np.array([[-40, -30, 60, 50], [480, 470, 600, 560], [900, 900, 950, 950]])
    out = mask_faces(astronaut, boxes, BlurConfig(mode="solid", shape="box"))
    assert (out[:40, :70] == 0).all() and (out[480:, 490:] == 0).all()  # the parts inside are masked
    assert (out[100:400, 100:400] == astronaut[100:400, 100:400]).all()
    np.testing.assert_array_equal(mask_faces(astronaut, boxes[2:], BlurConfig(mode="solid")), astronaut)


def test_anonymise_inputs_and_errors(astronaut, astronaut_path, astronaut_face, astronaut_detections):
    by_detections = openmtcnn.anonymise(astronaut, astronaut_detections)
    np.testing.assert_array_equal(by_detections, openmtcnn.anonymise(astronaut_path, astronaut_detections.boxes))
    np.testing.assert_array_equal(by_detections, openmtcnn.anonymise(astronaut, astronaut_detections))  # deterministic
    np.testing.assert_array_equal(openmtcnn.anonymise(astronaut, astronaut_face, mode="none"), astronaut)
    np.testing.assert_array_equal(openmtcnn.anonymise(astronaut, Detections.empty()), astronaut)
    for kwargs, says in (({"mode": "pixelate"}, "mode"), ({"shape": "circle"}, "shape"),
                         ({"mask_scale": -1}, "mask_scale")):
        with pytest.raises(ValueError, match=says):
            openmtcnn.anonymise(astronaut, astronaut_face, **kwargs)
    with pytest.raises(ValueError, match="N x 4"):
        openmtcnn.anonymise(astronaut, np.zeros((2, 3)))


# ---- the tracker ------------------------------------------------------------------------------------

def moving_face(n: int) -> np.ndarray:
    """A 40 x 50 face moving 4 px right and 1 px down per frame."""
    t = np.arange(n)[:, None]
    return np.hstack([100 + 4 * t, 80 + t, 140 + 4 * t, 130 + t]).astype(float)


def follow(boxes: np.ndarray, detected: set[int], config: TrackConfig = TrackConfig()) -> list:
    """The tracks' output per frame when the face is detected only in the frames ``detected``."""
    tracks, shown = Tracks(config), []
    for i, box in enumerate(boxes):
        tracks.predict()
        found = box[None] if i in detected else np.zeros((0, 4))
        shown.append(tracks.update(found, np.ones(len(found))))
    return shown


def test_a_face_missed_for_two_frames_stays_masked_where_it_went():
    truth = moving_face(12)
    shown = follow(truth, set(range(12)) - {6, 7})
    for i in (6, 7):
        assert len(shown[i].boxes) == 1 and shown[i].missed[0] == i - 5
        (x1, y1, x2, y2), (t1, u1, t2, u2) = shown[i].boxes[0], truth[i]
        assert x1 <= t1 and y1 <= u1 and x2 >= t2 and y2 >= u2, "the coasting box covers where the face went"
        assert box_iou(shown[i].boxes[0], truth[i]) > 0.6, "and is not much larger (it grows while unsure)"
    assert shown[8].missed[0] == 0 and shown[8].ids[0] == shown[5].ids[0] == 0  # the same track again


def test_tracks_end_after_keep_frames():
    shown = follow(moving_face(12), set(range(5)), TrackConfig(keep=3))
    assert [len(s.boxes) for s in shown] == [1] * 5 + [1, 1, 1] + [0] * 4
    shown = follow(moving_face(8), set(range(8)) - {4}, TrackConfig(keep=0))
    assert len(shown[4].boxes) == 0 and shown[5].ids[0] == 1  # no memory: a new track


def test_two_faces_keep_their_tracks():
    a, b = moving_face(6), moving_face(6) + [200, 0, 200, 0]
    tracks, ids = Tracks(), []
    for i in range(6):
        tracks.predict()
        found = np.stack([b[i], a[i]] if i % 2 else [a[i], b[i]])  # the detector's order changes
        faces = tracks.update(found, np.ones(2))
        ids.append({int(k): tuple(box) for k, box in zip(faces.ids, faces.boxes)})
    assert all(set(frame) == {0, 1} for frame in ids)
    assert all(ids[i][0][0] < 200 < ids[i][1][0] for i in range(6))


def test_greedy_match_takes_the_best_overlap_first():
    overlap = np.array([[0.9, 0.8], [0.85, 0.1], [0.0, 0.0]])
    rows, cols = greedy_match(overlap, 0.3)
    assert sorted(zip(rows.tolist(), cols.tolist())) == [(0, 0)]  # (1, 1) is below the threshold
    rows, cols = greedy_match(np.zeros((0, 3)), 0.3)
    assert len(rows) == len(cols) == 0


def crowd(n: int, shift: list[float], zoom: float = 1.0) -> np.ndarray:
    """(n, 12, 4): a grid of 12 faces 30 px wide seen by a camera panning ``shift[i]`` px in frame i, zooming ``zoom``."""
    xs, ys = np.meshgrid(np.arange(4) * 70 + 40, np.arange(3) * 60 + 30)
    boxes, out = np.stack([xs.ravel(), ys.ravel(), xs.ravel() + 30, ys.ravel() + 36], axis=1).astype(float), []
    for i in range(n):
        out.append(boxes)
        boxes = (boxes - shift[i] * np.array([1, 0, 1, 0])) * zoom
    return np.array(out)


def test_camera_motion_is_estimated_despite_a_face_moving_on_its_own():
    before = to_state(crowd(1, [0])[0])
    after = apply_motion(np.array([1.02, -5.0, 3.0]), before)
    after[4, 0:2] += 40  # someone walks
    assert np.allclose(estimate_motion(before, after), [1.02, -5.0, 3.0])
    assert estimate_motion(before[:2], after[:2]) is None  # too few faces to tell


def test_a_missed_face_follows_the_crowd_when_the_camera_turns_back():
    truth = crowd(14, [6] * 8 + [-6] * 6, zoom=1.01)  # a pan that reverses at frame 8, while zooming in
    off = {}
    for camera in (True, False):
        tracks = Tracks(TrackConfig(keep=8, growth=0, camera=camera))
        for i, boxes in enumerate(truth):
            tracks.predict()
            found = boxes[1:] if i >= 6 else boxes  # face 0 is missed from frame 6 on
            faces = tracks.update(found, np.ones(len(found)))
        lost = faces.boxes[faces.ids == 0]
        assert len(lost) == 1
        off[camera] = box_iou(lost[0], truth[-1][0])
    assert off[True] > 0.9 and off[False] < 0.3, off  # on its own, the track went on the old way


def test_edge_strips_are_the_edges_come_into_view():
    strips = edge_strips(np.array([-3.0, 0.0, 310.0, 240.0]), 320, 240, depth=20, step=4)
    assert strips.tolist() == [[290, 0, 320, 240]]  # 10 px new on the right: a strip 30 px deep
    strips = edge_strips(np.array([6.0, 5.0, 314.0, 235.0]), 320, 240, depth=20, step=4)
    assert strips.tolist() == [[0, 0, 26, 240], [0, 0, 320, 25], [294, 0, 320, 240], [0, 215, 320, 240]]
    assert len(edge_strips(np.array([-5.0, -5.0, 330.0, 250.0]), 320, 240, depth=20, step=4)) == 0  # zooming in


class StubDetector:
    """Records which stage API each frame used, and the boxes rescoring was given; finds ``moving_face``."""

    def __init__(self):
        self.calls, self.given, self.truth = [], [], moving_face(10)

    def found(self) -> Detections:
        box = self.truth[len(self.calls) - 1][None].astype(np.float32)
        return Detections(box, np.ones(1, np.float32), np.zeros((1, 5, 2), np.float32))

    def detect(self, frame) -> Detections:
        self.calls.append("detect")
        return self.found()

    def rescore(self, frame, boxes) -> Detections:
        self.calls.append("rescore")
        self.given.append((len(self.calls) - 1, np.asarray(boxes)))
        return self.found()


def test_frame_masker_runs_the_full_cascade_every_k_frames():
    stub = StubDetector()
    masker = FrameMasker(stub, SequenceConfig(blur=BlurConfig(mode="solid", colour=(255, 0, 0)), detect_every=3))
    for frame in np.zeros((10, 240, 320, 3), np.uint8):
        masked, faces = masker(frame)
        assert len(faces.boxes) == 1 and masked[..., 0].any()
    assert stub.calls == ["detect" if i % 3 == 0 else "rescore" for i in range(10)]
    for i, boxes in stub.given:  # R-Net and O-Net look where the track predicts the face
        assert len(boxes) == 1 and box_iou(boxes[0], stub.truth[i]) > 0.7


class PanningStub(StubDetector):
    """A crowd panning left in the frame (the camera turns right), 5 px a frame; P-Net proposes a box per scan."""

    def __init__(self):
        super().__init__()
        self.truth, self.scanned = crowd(10, [5] * 10), []

    def found(self) -> Detections:
        boxes = self.truth[len(self.calls) - 1].astype(np.float32)
        return Detections(boxes, np.ones(len(boxes), np.float32), np.zeros((len(boxes), 5, 2), np.float32))

    def run(self, image, until):
        self.scanned.append((len(self.calls), image.shape[:2]))
        return Detections(np.array([[1.0, 2.0, 21.0, 22.0]]), np.ones(1), None)


def test_frame_masker_scans_the_edge_coming_into_view_between_full_frames():
    stub = PanningStub()
    masker = FrameMasker(stub, SequenceConfig(detect_every=5, edge_depth=20, edge_step=8))
    for frame in np.zeros((10, 240, 320, 3), np.uint8):
        masker.find(frame)
    # the camera's motion is known from frame 2 on; 10 px come into view on the right every other frame
    assert stub.scanned == [(3, (240, 30)), (7, (240, 30)), (9, (240, 30))]
    for i, boxes in stub.given:  # the proposal, moved from its strip into the frame, goes to R-Net and O-Net
        assert ([291, 2, 311, 22] in boxes.round().tolist()) == (i in (3, 7, 9))


# ---- the package ------------------------------------------------------------------------------------

def test_import_openmtcnn_does_not_load_pyav(repo_root):
    """``openmtcnn.anonymise`` is callable, its submodules still import by path, and PyAV loads only for videos."""
    script = ("import sys, numpy as np, openmtcnn\n"
              "out = openmtcnn.anonymise(np.zeros((20, 20, 3), np.uint8), [[2, 2, 12, 12]], mode='solid')\n"
              "import openmtcnn.anonymise.track as T\n"
              "assert T.Tracks and openmtcnn.anonymise.mask.mask_faces\n"
              "print('av' in sys.modules, callable(openmtcnn.anonymise), out.dtype)\n")
    env = {**os.environ, "PYTHONPATH": str(repo_root) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["False", "True", "uint8"]


def test_anonymise_builds_on_the_public_detect_api_and_others_use_only_its_face():
    """It imports detect's package (not its modules), geometry and progress; only the CLI reaches its modules."""
    from test_layers import import_edges

    edges = import_edges()
    used = {target for _, _, src, _, target in edges if src == "anonymise" and not target.startswith("openmtcnn.anon")}
    assert used <= {"openmtcnn.detect", "openmtcnn.geometry", "openmtcnn.progress"}, used
    inside = {(file, target) for file, _, src, dst, target in edges if dst == "anonymise"
              and src not in ("anonymise", "cli") and target != "openmtcnn.anonymise"}
    assert not inside, inside
