"""Shared fixtures for the openmtcnn test suite.

Core tests use only what they make themselves plus the bundled sample image. Tests that
need the shared research data ask for ``data_dir`` / ``widerface_dir`` and skip cleanly
when it is absent (``$OPENMTCNN_DATA`` overrides the default ``<repo>/../shared/data``).
"""
from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np
import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
ASTRONAUT_PATH = REPO_ROOT / "openmtcnn" / "assets" / "astronaut.png"
# The one clear face in the sample image, x1 y1 x2 y2 (x=181, y=58, w=88, h=117).
ASTRONAUT_FACE = np.array([181.0, 58.0, 181.0 + 88.0, 58.0 + 117.0])


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO_ROOT


@pytest.fixture(scope="session")
def astronaut_path() -> Path:
    assert ASTRONAUT_PATH.is_file(), f"bundled sample image missing: {ASTRONAUT_PATH}"
    return ASTRONAUT_PATH


@pytest.fixture(scope="session")
def _astronaut_rgb(astronaut_path) -> np.ndarray:
    bgr = cv2.imread(str(astronaut_path), cv2.IMREAD_COLOR)
    assert bgr is not None
    rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
    rgb.flags.writeable = False
    return rgb


@pytest.fixture
def astronaut(_astronaut_rgb) -> np.ndarray:
    """The sample picture as a fresh uint8 RGB (512, 512, 3) array (safe to modify)."""
    return _astronaut_rgb.copy()


@pytest.fixture(scope="session")
def astronaut_face() -> np.ndarray:
    """Known face box in the sample picture, x1 y1 x2 y2."""
    return ASTRONAUT_FACE.copy()


@pytest.fixture(scope="session")
def detector():
    """One default detector on the CPU for the whole session (building sessions is the slow part).

    The CPU's answers are the reference the exactness tests hold others to; ``test_gpu`` checks a GPU's.
    """
    from openmtcnn import MTCNN

    return MTCNN(device="cpu")


@pytest.fixture(scope="session")
def astronaut_detections(detector, _astronaut_rgb):
    """Detections of the default detector on the sample picture (computed once)."""
    return detector.detect(_astronaut_rgb)


def _data_root() -> Path:
    env = os.environ.get("OPENMTCNN_DATA")
    return Path(env) if env else REPO_ROOT.parent / "shared" / "data"


@pytest.fixture(scope="session")
def data_dir() -> Path:
    root = _data_root()
    if not root.is_dir():
        pytest.skip(f"shared data folder not found: {root} (set OPENMTCNN_DATA)")
    return root


@pytest.fixture(scope="session")
def training_data(data_dir) -> Path:
    """The shared data folder, when it holds the training parts (WIDER FACE train, CNN_FacePoint)."""
    needed = [data_dir / "widerface" / "wider_face_split" / "wider_face_train_bbx_gt.txt",
              data_dir / "widerface" / "WIDER_train" / "images", data_dir / "cnn_facepoint" / "trainImageList.txt"]
    if not all(p.exists() for p in needed):
        pytest.skip(f"WIDER FACE train data or CNN_FacePoint not found under {data_dir}")
    return data_dir


@pytest.fixture(scope="session")
def widerface_dir(data_dir) -> Path:
    root = data_dir / "widerface"
    needed = [root / "WIDER_val" / "images", root / "eval_tools" / "ground_truth"]
    if not all(p.is_dir() for p in needed):
        pytest.skip(f"WIDER FACE val data not found under {root}")
    return root
