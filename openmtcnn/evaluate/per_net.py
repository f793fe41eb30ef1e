"""Per-net latency: each net alone at its input size, per engine and thread count (min / max / avg ms).

The table deployments judge pruning and int8 by: P-Net on a frame's largest pyramid level, R-Net and
O-Net on one crop and on a batch. The caller builds the nets (``openmtcnn bench --per-net``).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import numpy as np

from openmtcnn.evaluate.speed import time_calls
from openmtcnn.geometry import INPUT_SIZES, PNET_WINDOW, area_resize, crop_resize, integral_image


@dataclass(frozen=True)
class PerNetConfig:
    """The inputs timed: a frame's largest pyramid level (faces from ``min_face`` up) and crop batches."""

    min_face: float = 20
    rnet_batch: int = 64
    onet_batch: int = 32
    warmup: int = 3
    repeats: int = 50


def net_inputs(frame: np.ndarray, cfg: PerNetConfig = PerNetConfig()) -> dict[str, tuple[str, np.ndarray]]:
    """{case: (stage, N x 3 x H x W float32 batch)}: P-Net's largest level, one crop and a batch for R-Net and O-Net.

    The crops are squares laid over the frame in a grid (their content does not change a net's time)."""
    h, w = frame.shape[:2]
    scale = PNET_WINDOW / cfg.min_face
    level = area_resize(integral_image(frame), math.ceil(w * scale), math.ceil(h * scale), channels_first=True)
    cases = {f"pnet {level.shape[2]}x{level.shape[1]}": ("pnet", level[None])}
    side = max(12, min(h, w) // 4)
    step = max(1, side // 4)
    boxes = np.array([(x, y, x + side, y + side) for y in range(0, h - side + 1, step)
                      for x in range(0, w - side + 1, step)], np.float64)
    for stage, n in (("rnet", cfg.rnet_batch), ("onet", cfg.onet_batch)):
        crops = crop_resize(frame, np.resize(boxes, (n, 4)), INPUT_SIZES[stage], channels_first=True)
        cases[f"{stage} x1"] = (stage, np.ascontiguousarray(crops[:1]))
        cases[f"{stage} x{n}"] = (stage, np.ascontiguousarray(crops))
    return cases


def time_nets(nets: dict[str, Callable], cases: dict[str, tuple[str, np.ndarray]],
              cfg: PerNetConfig = PerNetConfig()) -> list[dict]:
    """One row per case: milliseconds of a call of the stage's net on its batch, min / max / avg."""
    rows = []
    for case, (stage, batch) in cases.items():
        ms = np.asarray(time_calls(lambda: nets[stage](batch), cfg.warmup, cfg.repeats))
        rows.append({"net": case, "stage": stage, "batch": int(len(batch)), "min_ms": round(float(ms.min()), 3),
                     "max_ms": round(float(ms.max()), 3), "avg_ms": round(float(ms.mean()), 3)})
    return rows


def markdown(rows: list[dict]) -> str:
    """The rows (with ``weights``, ``backend``, ``threads``) as a markdown table."""
    head = "| weights | net | backend | threads | min ms | max ms | avg ms |\n|---|---|---|---:|---:|---:|---:|"
    body = [f"| {r['weights']} | {r['net']} | {r['backend']} | {r['threads']} | {r['min_ms']:.3f} | "
            f"{r['max_ms']:.3f} | {r['avg_ms']:.3f} |" for r in rows]
    return "\n".join([head, *body])
