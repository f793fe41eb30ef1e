"""The nets on PyTorch: same outputs as the ONNX files, for training checks and GPUs."""
from __future__ import annotations

import numpy as np
import torch

from openmtcnn import weights as store
from openmtcnn.models.nets import Inference, exact_on_cuda
from openmtcnn.models.registry import create_model, model_overrides


def load_net(weights: str, stage: str) -> torch.nn.Module:
    """Build a stage's registered variant and fill it from the weight set's npz."""
    info = store.manifest(weights)
    try:
        net = create_model(info["models"][stage], **model_overrides(info.get("model_kwargs", {}).get(stage)))
    except (KeyError, TypeError) as e:
        raise store.WeightsError(f"{store.weights_dir(weights) / 'manifest.json'}: no usable model for {stage} "
                                 f"under \"models\" ({e!r}); restore the weight set's manifest") from None
    state = {k: torch.from_numpy(v) for k, v in store.load_state(weights, stage).items()}
    try:
        net.load_state_dict(state)
    except RuntimeError as e:  # missing, unexpected or mis-shaped parameters
        raise store.WeightsError(f"{store.params_dir(weights) / 'torch.npz'}: its {stage} parameters do not fit "
                                 f"model {info['models'][stage]!r} ({str(e).splitlines()[0]}); restore the weight "
                                 "set, or export it again") from None
    return Inference(net).eval()


class TorchNet:
    """``net(batch)`` -> tuple of NumPy outputs, as the ONNX Runtime and OpenCV nets."""

    def __init__(self, module: torch.nn.Module, device: torch.device):
        self.module, self.device = module.to(device), device

    @torch.inference_mode()
    def __call__(self, batch: np.ndarray) -> tuple[np.ndarray, ...]:
        with exact_on_cuda(self.device):
            out = self.module(torch.from_numpy(np.ascontiguousarray(batch, np.float32)).to(self.device))
        return tuple(t.cpu().numpy() for t in out)


def torch_nets(weights: str = store.DEFAULT, threads: int | None = None, device: str | None = None) -> dict:
    if device in (None, "auto"):
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if threads:
        torch.set_num_threads(int(threads))
    return {s: TorchNet(load_net(weights, s), torch.device(device)) for s in store.STAGES}
