"""The one dataset loop of the evaluators, and their one failure policy.

Every evaluator walks its images through ``detect_all``: read the image, detect, next, with a
progress bar. An image that cannot be read or detected on (a missing, corrupt or unsupported
file) never stops the run: it is recorded as failed, adds no detections, and its faces count
as missed. Results hold ``"failed": {"count": N, "images": [{"image": name, "error": why}]}``
and the one-line summaries say how many failed.
"""
from __future__ import annotations

from typing import Any, Callable, Iterator, NamedTuple, Sequence

import cv2
import numpy as np

from openmtcnn.detect.image import to_rgb
from openmtcnn.progress import progress

# What reading a bad or missing file raises (see openmtcnn.detect.image.to_rgb), and OpenCV's own error.
UNREADABLE = (OSError, ValueError, TypeError, cv2.error)


class Outcome(NamedTuple):
    """One item of a dataset after detection: what ``detect`` returned, or why the image failed."""

    item: Any  # the dataset's item, as given
    found: Any  # what detect(image) returned; None when the image failed
    size: tuple[int, int] | None  # the image's (height, width); None when it failed
    error: str | None  # why the image failed; None when it did not


def detect_all(detect: Callable[[np.ndarray], Any], items: Sequence, image_of: Callable[[Any], Any],
               desc: str, show_progress: bool = True) -> Iterator[Outcome]:
    """For each item in order: read ``image_of(item)`` as RGB and run ``detect`` on it; failures are yielded."""
    for item in progress(items, desc=desc, total=len(items), enable=show_progress):
        try:
            image = to_rgb(image_of(item))
            found = detect(image)
        except UNREADABLE as e:
            yield Outcome(item, None, None, str(e) or type(e).__name__)
            continue
        yield Outcome(item, found, image.shape[:2], None)


def failed_report(failed: Sequence[Outcome], name: Callable[[Any], str] = str) -> dict:
    """The results' ``"failed"`` entry: how many images failed, and each one's name and error."""
    return {"count": len(failed), "images": [{"image": name(o.item), "error": o.error} for o in failed]}


def failed_note(results: dict) -> str:
    """The summary line's mention of failed images ("" when none failed)."""
    n = results["failed"]["count"]
    return f", {n} image{'s' * (n != 1)} failed" if n else ""
