"""Video files: detect on every frame, write an annotated MP4 and one JSON line per frame."""
from __future__ import annotations

import json
from pathlib import Path

import cv2

from openmtcnn.cli.draw import annotate
from openmtcnn.detect.cascade import to_dicts
from openmtcnn.progress import progress


def frames(capture: cv2.VideoCapture):
    while True:
        ok, bgr = capture.read()
        if not ok:
            return
        yield cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def detect_video(detector, path: Path, out_path: Path | None = None, show_progress: bool = True) -> list[list[dict]]:
    """Faces per frame; with ``out_path``, also ``out_path`` (MP4) and ``out_path.jsonl``."""
    capture = cv2.VideoCapture(str(path))
    if not capture.isOpened():
        raise ValueError(f"could not open {path} as a video")
    fps = capture.get(cv2.CAP_PROP_FPS) or 25.0
    total = int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) or None
    writer, lines, per_frame = None, None, []
    try:
        if out_path is not None:
            out_path.parent.mkdir(parents=True, exist_ok=True)
            lines = open(out_path.with_suffix(".jsonl"), "w")
        for i, rgb in enumerate(progress(frames(capture), desc=path.name, total=total, enable=show_progress)):
            d = detector.detect(rgb)
            faces = to_dicts(d)
            per_frame.append(faces)
            if out_path is not None:
                if writer is None:
                    h, w = rgb.shape[:2]
                    writer = cv2.VideoWriter(str(out_path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (w, h))
                writer.write(cv2.cvtColor(annotate(rgb, d), cv2.COLOR_RGB2BGR))
                lines.write(json.dumps({"frame": i, "time": i / fps, "faces": faces}) + "\n")
    finally:
        capture.release()
        if writer is not None:
            writer.release()
        if lines is not None:
            lines.close()
    if not per_frame:
        raise ValueError(f"no frames could be read from {path}")
    return per_frame
