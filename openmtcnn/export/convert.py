"""Convert the authors' published MTCNN weights (npy, TensorFlow layout) to openmtcnn's formats.

The published nets were run on transposed images (x and y swapped). Transposing
every conv kernel spatially, and reordering the first fully connected layer's
inputs, gives nets that take ordinary images and compute the same thing.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

# (npy layer, torch parameter prefix, kind) in order, per stage.
LAYERS = {
    "pnet": [("conv1", "body.0", "conv"), ("PReLU1", "body.1", "prelu"),
             ("conv2", "body.3", "conv"), ("PReLU2", "body.4", "prelu"),
             ("conv3", "body.5", "conv"), ("PReLU3", "body.6", "prelu"),
             ("conv4-1", "heads.cls", "conv"), ("conv4-2", "heads.box", "conv")],
    "rnet": [("conv1", "body.0", "conv"), ("prelu1", "body.1", "prelu"),
             ("conv2", "body.3", "conv"), ("prelu2", "body.4", "prelu"),
             ("conv3", "body.6", "conv"), ("prelu3", "body.7", "prelu"),
             ("conv4", "body.9", "fc_from_conv"), ("prelu4", "body.10", "prelu"),
             ("conv5-1", "heads.cls", "fc"), ("conv5-2", "heads.box", "fc")],
    "onet": [("conv1", "body.0", "conv"), ("prelu1", "body.1", "prelu"),
             ("conv2", "body.3", "conv"), ("prelu2", "body.4", "prelu"),
             ("conv3", "body.6", "conv"), ("prelu3", "body.7", "prelu"),
             ("conv4", "body.9", "conv"), ("prelu4", "body.10", "prelu"),
             ("conv5", "body.12", "fc_from_conv"), ("prelu5", "body.13", "prelu"),
             ("conv6-1", "heads.cls", "fc"), ("conv6-2", "heads.box", "fc"),
             ("conv6-3", "heads.landmarks", "fc")],
}
NPY_FILES = {"pnet": "det1.npy", "rnet": "det2.npy", "onet": "det3.npy"}


def convert_layer(params: dict, kind: str, feature_hw: int) -> dict[str, np.ndarray]:
    """One npy layer to torch tensors for an untransposed input."""
    if kind == "prelu":
        return {"weight": params["alpha"].astype(np.float32)}
    w, b = params["weights"].astype(np.float32), params["biases"].astype(np.float32)
    if kind == "conv":  # (kx, ky, in, out) in the transposed frame -> (out, in, ky, kx)
        w = w.transpose(3, 2, 1, 0)
    elif kind == "fc_from_conv":  # inputs flattened as (x, y, c) -> torch's (c, y, x)
        cin, cout = w.shape
        c = cin // (feature_hw * feature_hw)
        w = w.reshape(feature_hw, feature_hw, c, cout).transpose(3, 2, 1, 0).reshape(cout, cin)
    else:  # plain fc
        w = w.T
    return {"weight": np.ascontiguousarray(w), "bias": b}


def convert_npy(npy_path: str | Path, stage: str) -> dict[str, np.ndarray]:
    """State dict (NumPy arrays) of one stage from the authors' npy file (a trusted input)."""
    raw = np.load(npy_path, allow_pickle=True, encoding="latin1").item()
    state = {}
    for layer, prefix, kind in LAYERS[stage]:
        for k, v in convert_layer(raw[layer], kind, feature_hw=3).items():
            state[f"{prefix}.{k}"] = v
    return state


def convert_published(src: str | Path, out: str | Path) -> Path:
    """Write the published weight set (npz + ONNX + manifest) from the authors' npy folder."""
    import torch

    from openmtcnn.weights.onnx import to_onnx_bytes
    from openmtcnn.models import create_model
    from openmtcnn.weights import save_weight_set

    src = Path(src)
    npy_dir = src / "npy" if (src / "npy").is_dir() else src
    states, onnx = {}, {}
    for stage in ("pnet", "rnet", "onet"):
        path = npy_dir / NPY_FILES[stage]
        if not path.is_file():
            raise FileNotFoundError(f"missing {path}")
        states[stage] = convert_npy(path, stage)
        net = create_model(stage)
        net.load_state_dict({k: torch.from_numpy(v) for k, v in states[stage].items()})
        onnx[stage] = to_onnx_bytes(net)
    info = {"name": Path(out).name, "models": {s: s for s in states},
            "source": "Zhang et al. 2016 published MTCNN weights (MIT licence)",
            "made_by": f"openmtcnn convert {src} --out {out}"}
    return save_weight_set(out, states, onnx, info)
