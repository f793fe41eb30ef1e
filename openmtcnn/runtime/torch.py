"""The three nets on PyTorch: same outputs as the ONNX path, for training checks and GPUs."""
from __future__ import annotations

import numpy as np
import torch

from openmtcnn import weights as store
from openmtcnn.models import create_model
from openmtcnn.models.nets import Inference


def load_net(weights: str, stage: str) -> torch.nn.Module:
    """Build a stage's registered variant and fill it from the weight set's npz."""
    name = store.manifest(weights)["models"][stage]
    net = create_model(name)
    state = {k: torch.from_numpy(v) for k, v in store.load_state(weights, stage).items()}
    net.load_state_dict(state)
    return Inference(net).eval()


class TorchNets:
    """``nets(stage, batch)`` -> tuple of NumPy outputs, as ``OnnxNets``."""

    def __init__(self, weights: str = store.DEFAULT, threads: int | None = None, device: str | None = None):
        if device in (None, "auto"):
            device = "cuda" if torch.cuda.is_available() else "cpu"
        self.device = torch.device(device)
        if threads:
            torch.set_num_threads(int(threads))
        self.nets = {s: load_net(weights, s).to(self.device) for s in store.STAGES}

    @torch.inference_mode()
    def __call__(self, stage: str, batch: np.ndarray) -> tuple[np.ndarray, ...]:
        out = self.nets[stage](torch.from_numpy(np.ascontiguousarray(batch, np.float32)).to(self.device))
        return tuple(t.cpu().numpy() for t in out)
