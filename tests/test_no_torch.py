"""Detection must work where PyTorch is not installed (it is needed only to train)."""
from __future__ import annotations

import json
import os
import subprocess
import sys

SCRIPT = r"""
import sys
sys.modules["torch"] = None  # any "import torch" now raises ImportError
import json

import openmtcnn
from openmtcnn import MTCNN
from openmtcnn.models import list_models  # the registry lists variants without torch

try:
    import torch  # noqa: F401
    torch_importable = True
except ImportError:
    torch_importable = False

faces = MTCNN().detect_faces(sys.argv[1])
d = MTCNN().detect(sys.argv[1])
print(json.dumps({"faces": faces, "n": len(d.boxes), "models": list_models(),
                  "torch_importable": torch_importable,
                  "torch_loaded": any(k == "torch" or k.startswith("torch.")
                                      for k, v in sys.modules.items() if v is not None)}))
"""


def test_detection_without_torch(repo_root, astronaut_path):
    env = dict(os.environ)
    env["PYTHONPATH"] = str(repo_root) + os.pathsep + env.get("PYTHONPATH", "")
    proc = subprocess.run([sys.executable, "-c", SCRIPT, str(astronaut_path)], cwd=repo_root, env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["torch_importable"] is False and out["torch_loaded"] is False
    assert out["n"] >= 1 and len(out["faces"]) == out["n"]
    top = out["faces"][0]
    assert top["confidence"] > 0.9
    x, y, w, h = top["box"]
    assert abs(x - 181) < 15 and abs(y - 58) < 15 and w > 40 and h > 40
    assert {"pnet", "rnet", "onet"} <= set(out["models"])


def test_building_a_model_without_torch_says_what_to_install(repo_root):
    script = ('import sys; sys.modules["torch"] = None\n'
              'from openmtcnn.models import create_model\n'
              'try:\n    create_model("pnet")\nexcept ImportError as e:\n    print("IMPORT-ERROR", e)\n')
    env = dict(os.environ)
    env["PYTHONPATH"] = str(repo_root) + os.pathsep + env.get("PYTHONPATH", "")
    proc = subprocess.run([sys.executable, "-c", script], cwd=repo_root, env=env,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "IMPORT-ERROR" in proc.stdout and "torch" in proc.stdout.lower()
