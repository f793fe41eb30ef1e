"""Where faces are lost: for each ground-truth face, the first cascade stage with no box on it.

A face is "on" a stage when some box that survived the stage overlaps it with IoU >= 0.5.
Stages in order: P-Net proposals (after its NMS), R-Net survivors, O-Net survivors (above
threshold, before the final NMS), final detections. Counts are split by face size.
"""
from __future__ import annotations

import numpy as np

from openmtcnn.geometry import iou_matrix

STAGES = ("pnet", "rnet", "onet", "final")  # MTCNN.run's stages; a trace holds each one's boxes
OUTCOMES = ("never proposed by P-Net", "rejected by R-Net", "rejected by O-Net", "removed by final NMS", "found")
SIZE_EDGES = (0, 10, 20, 40, 80, 160, np.inf)  # face height in pixels


def size_bucket_names(edges=SIZE_EDGES) -> list[str]:
    return [f"{int(lo)}-{int(hi)} px" if np.isfinite(hi) else f">= {int(lo)} px" for lo, hi in zip(edges, edges[1:])]


def lost_at(trace: dict[str, np.ndarray], gt: np.ndarray, iou_threshold: float = 0.5) -> np.ndarray:
    """Outcome index (into OUTCOMES) for each ground-truth box (x1 y1 x2 y2) of one image."""
    reached = np.ones((len(gt), len(STAGES) + 1), bool)  # column k: some box survives stage k
    for k, stage in enumerate(STAGES):
        boxes = trace[stage]
        hit = iou_matrix(gt, boxes[:, :4]).max(axis=1) >= iou_threshold if len(boxes) else np.zeros(len(gt), bool)
        reached[:, k + 1] = hit
    reached = np.logical_and.accumulate(reached, axis=1)  # a face counts at a stage only if it got there
    return reached[:, 1:].sum(axis=1)  # 0 = lost at P-Net ... 4 = found


def stage_table(outcomes: np.ndarray, heights: np.ndarray, edges=SIZE_EDGES) -> dict:
    """Counts of each outcome per face-height bucket, plus totals."""
    bucket = np.digitize(heights, edges[1:-1])
    names = size_bucket_names(edges)
    counts = np.zeros((len(names), len(OUTCOMES)), np.int64)
    np.add.at(counts, (bucket, outcomes), 1)
    table = {name: dict(zip(OUTCOMES, map(int, row))) for name, row in zip(names, counts)}
    table["all"] = dict(zip(OUTCOMES, map(int, counts.sum(axis=0))))
    return table


def markdown(table: dict) -> str:
    """The table as Markdown: one row per size bucket, one column per outcome, with totals."""
    head = "| face height | faces | " + " | ".join(OUTCOMES) + " |"
    rule = "|" + "---|" * (len(OUTCOMES) + 2)
    rows = []
    for bucket, counts in table.items():
        n = sum(counts.values())
        cells = [f"{c} ({100 * c / n:.0f}%)" if n else "0" for c in counts.values()]
        rows.append(f"| {bucket} | {n} | " + " | ".join(cells) + " |")
    return "\n".join([head, rule, *rows])
