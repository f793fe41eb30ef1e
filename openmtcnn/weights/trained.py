"""Trained checkpoints -> nets and weight sets (ONNX + npz + manifest), by the published weights' code path.

Needs torch: nothing on the detection path imports this module.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable

import torch

from openmtcnn import weights as store
from openmtcnn.models.registry import create_model, model_overrides, overrides_json
from openmtcnn.weights.onnx import to_onnx_bytes


def load_trained(checkpoint: str | Path, device: str = "cpu",
                 prepare: Callable[[torch.nn.Module], torch.nn.Module] | None = None) -> torch.nn.Module:
    """The net of a checkpoint (pickle-free load), in eval mode; ``prepare`` as in ``train.trainer.train``."""
    ckpt = torch.load(checkpoint, map_location=device, weights_only=True)
    config = ckpt["config"]
    net = create_model(config["model"], **model_overrides(config.get("model_kwargs")))
    net = prepare(net) if prepare else net
    net.load_state_dict(ckpt["model"])
    return net.eval()


def export_trained(checkpoints: dict[str, str | Path], out: str | Path, base: str = store.DEFAULT,
                   note: str = "") -> Path:
    """Write a weight set from trained checkpoints; stages without one are copied from ``base``.

    The result loads with ``MTCNN(weights=<out folder>)``; placed under openmtcnn/weights/ it
    is listed by ``available_weights()``.
    """
    unknown = set(checkpoints) - set(store.STAGES)
    if unknown:
        raise ValueError(f"unknown stages {sorted(unknown)}; expected {store.STAGES}")
    states, onnx, models, sources, kwargs = {}, {}, {}, {}, {}
    base_manifest = store.manifest(base)
    for stage in store.STAGES:
        if stage in checkpoints:
            net = load_trained(checkpoints[stage])
            states[stage] = {k: v.detach().cpu().numpy() for k, v in net.state_dict().items()}
            onnx[stage] = to_onnx_bytes(net)
            models[stage], sources[stage] = net.spec.name, str(checkpoints[stage])
            kwargs[stage] = overrides_json(net.overrides)
        else:
            states[stage] = store.load_state(base, stage)
            onnx[stage] = store.onnx_path(base, stage).read_bytes()
            models[stage], sources[stage] = base_manifest["models"][stage], f"weight set {base}"
            kwargs[stage] = base_manifest.get("model_kwargs", {}).get(stage, {})
    info = {"name": Path(out).name, "models": models, "sources": sources, "note": note}
    if any(kwargs.values()):
        info["model_kwargs"] = {s: k for s, k in kwargs.items() if k}
    return store.save_weight_set(out, states, onnx, info)
