"""MTCNN's multi-task loss (Zhang et al. 2016, eq. 1-5) with online hard example mining.

Each sample type feeds only its own tasks: negatives and positives the face classifier,
positives and parts the box regressor, landmark samples the landmark regressor. The
classifier keeps only the hardest 70% of its samples in each batch.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from openmtcnn.data.crops import LANDMARK, PART  # noqa: F401  (sample kinds)
from openmtcnn.data.crops import NEGATIVE as NEG
from openmtcnn.data.crops import POSITIVE as POS

TASK_WEIGHTS = {"pnet": (1.0, 0.5, 0.5), "rnet": (1.0, 0.5, 0.5), "onet": (1.0, 0.5, 1.0)}  # cls, box, landmarks


@dataclass
class Losses:
    total: torch.Tensor
    cls: torch.Tensor
    box: torch.Tensor
    landmarks: torch.Tensor


def ohem_cross_entropy(logits: torch.Tensor, labels: torch.Tensor, keep: float = 0.7) -> torch.Tensor:
    """Mean cross-entropy over the ``keep`` fraction of samples with the largest loss."""
    if len(labels) == 0:
        return logits.sum() * 0.0
    losses = F.cross_entropy(logits, labels, reduction="none")
    k = max(1, int(round(keep * len(losses))))
    return torch.topk(losses, k, sorted=False).values.mean()


def masked_mse(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Squared Euclidean error per selected sample, averaged; zero (with a gradient path) when none."""
    if not mask.any():
        return pred.sum() * 0.0
    return ((pred[mask] - target[mask]) ** 2).sum(dim=1).mean()


def mtcnn_loss(outputs: tuple[torch.Tensor, ...], kind: torch.Tensor, box: torch.Tensor, landmarks: torch.Tensor,
               weights: tuple[float, float, float] = (1.0, 0.5, 0.5), ohem_keep: float = 0.7) -> Losses:
    """Weighted sum of the three task losses for a batch of mixed samples.

    ``outputs`` are the net's (cls logits, box offsets[, landmarks]) with spatial size 1
    (P-Net on 12x12 crops gives N x C x 1 x 1); ``landmarks`` targets are (N, 5, 2) and the
    landmark head predicts all x then all y (the published layout).
    """
    logits, offsets, *rest = (o.flatten(1) for o in outputs)
    is_cls = (kind == NEG) | (kind == POS)
    cls = ohem_cross_entropy(logits[is_cls], (kind[is_cls] == POS).long(), ohem_keep)
    box_loss = masked_mse(offsets, torch.nan_to_num(box), (kind == POS) | (kind == PART))
    if rest:
        target = torch.nan_to_num(landmarks).transpose(1, 2).flatten(1)  # (N, 5, 2) -> x1..x5, y1..y5
        lmk = masked_mse(rest[0], target, kind == LANDMARK)
    else:
        lmk = logits.sum() * 0.0
    w_cls, w_box, w_lmk = weights
    return Losses(w_cls * cls + w_box * box_loss + w_lmk * lmk, cls.detach(), box_loss.detach(), lmk.detach())
