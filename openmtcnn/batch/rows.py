"""One row per image: what a worker makes of a chunk of paths, as the Arrow table both engines return."""
from __future__ import annotations

from typing import Sequence

import numpy as np
import pyarrow as pa

# ``index`` (the image's place in the sorted input list) orders and shards the rows; it is not written.
SCHEMA = pa.schema([("index", pa.int64()), ("path", pa.string()), ("width", pa.int32()), ("height", pa.int32()),
                    ("boxes", pa.list_(pa.float32())), ("scores", pa.list_(pa.float32())),
                    ("landmarks", pa.list_(pa.float32())), ("error", pa.string())])
COLUMNS = {"boxes": "N x 4 flattened: x1 y1 x2 y2 per face, best first", "scores": "N face probabilities",
           "landmarks": "N x 5 x 2 flattened: x y of left eye, right eye, nose, mouth left, mouth right",
           "error": "why the image could not be used (then width, height are null and the lists empty)"}


def describe(error: BaseException) -> str:
    """An error as the row records it: its message, or its type when it has none."""
    return str(error) or type(error).__name__


def detect_images(detector, images: list[np.ndarray]) -> list:
    """Detections (or the exception) for each image; one image that breaks the cascade is retried alone."""
    try:
        return detector.detect(images, return_exceptions=True) if images else []
    except Exception:  # noqa: BLE001 -- a job over millions of files keeps the others' results
        found = []
        for image in images:
            try:
                found.append(detector.detect(image))
            except Exception as e:  # noqa: BLE001
                found.append(e)
        return found


def flat_lists(parts: list[np.ndarray]) -> pa.ListArray:
    """One list<float32> row per array (each flattened), built from one concatenation."""
    lengths = np.array([p.size for p in parts], np.int32)
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int32)
    values = np.concatenate([p.ravel() for p in parts]).astype(np.float32) if parts else np.zeros(0, np.float32)
    return pa.ListArray.from_arrays(pa.array(offsets), pa.array(values, pa.float32()))


def read_one(detector, path: str) -> tuple[np.ndarray | None, str | None]:
    """(RGB image, None), or (None, why not): corrupt, empty, missing, not an image."""
    try:
        return detector.read(path), None
    except Exception as e:  # noqa: BLE001 -- a bad file is a row with its error, never the end of the job
        return None, describe(e)


def detect_chunk(detector, start: int, paths: Sequence[str]) -> pa.Table:
    """The rows of ``paths`` (input indices ``start``...): each read and detected, or its error recorded."""
    images, errors = (list(column) for column in zip(*[read_one(detector, p) for p in paths]))
    good = [k for k, im in enumerate(images) if im is not None]
    empty = np.zeros(0, np.float32)
    boxes, scores, marks = [empty] * len(paths), [empty] * len(paths), [empty] * len(paths)
    for k, d in zip(good, detect_images(detector, [images[k] for k in good])):
        if isinstance(d, BaseException):
            errors[k] = describe(d)
        else:
            boxes[k], scores[k], marks[k] = d.boxes, d.scores, d.landmarks
    sizes = [im.shape[:2] if e is None else (None, None) for im, e in zip(images, errors)]  # (height, width)
    return pa.table({
        "index": pa.array(np.arange(start, start + len(paths)), pa.int64()),
        "path": pa.array(list(paths), pa.string()),
        "width": pa.array([w for _, w in sizes], pa.int32()), "height": pa.array([h for h, _ in sizes], pa.int32()),
        "boxes": flat_lists(boxes), "scores": flat_lists(scores), "landmarks": flat_lists(marks),
        "error": pa.array(errors, pa.string())}, schema=SCHEMA)


def counts(table: pa.Table) -> tuple[int, int]:
    """(faces, errors) in a table of rows."""
    import pyarrow.compute as pc

    faces = pc.sum(pc.list_value_length(table.column("scores"))).as_py() or 0
    return int(faces), table.num_rows - table.column("error").null_count
