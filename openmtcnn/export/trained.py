"""Trained checkpoints -> a weight set (ONNX + npz + manifest), by the published weights' code path."""
from __future__ import annotations

from pathlib import Path

from openmtcnn import weights as store
from openmtcnn.export.onnx import to_onnx_bytes
from openmtcnn.models.registry import overrides_json
from openmtcnn.train.trainer import load_trained


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
