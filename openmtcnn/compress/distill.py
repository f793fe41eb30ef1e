"""Knowledge distillation: a student net learns the class scores and boxes of a teacher net.

The teacher (any weight set's net for the same stage, e.g. the published one) sees every
batch the student sees. Its softened face probabilities guide the student's classifier on
all samples, parts and landmark crops included, which the labels alone leave out; its box
offsets guide the regressor on positives and parts.
"""
from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F

from openmtcnn.train.loss import PART, POS


def teacher_net(weights: str, stage: str, device: str | torch.device = "cpu") -> torch.nn.Module:
    """The raw net (logits, boxes[, landmarks]) of a weight set's stage, frozen."""
    from openmtcnn.runtime.torch import load_net

    net = load_net(weights, stage).net.to(device if str(device) != "auto" else "cpu").eval()
    for p in net.parameters():
        p.requires_grad_(False)
    return net


def distillation_terms(student: tuple[torch.Tensor, ...], teacher: tuple[torch.Tensor, ...], kind: torch.Tensor,
                       temperature: float = 2.0) -> tuple[torch.Tensor, torch.Tensor]:
    """(class term, box term): KL divergence of softened class distributions over all samples
    (scaled by T^2, as usual), and squared error to the teacher's boxes on positives and parts."""
    s_logits, s_box = student[0].flatten(1), student[1].flatten(1)
    t_logits, t_box = teacher[0].flatten(1), teacher[1].flatten(1)
    cls = F.kl_div(F.log_softmax(s_logits / temperature, 1), F.softmax(t_logits / temperature, 1),
                   reduction="batchmean") * temperature ** 2
    boxed = (kind == POS) | (kind == PART)
    box = ((s_box[boxed] - t_box[boxed]) ** 2).sum(1).mean() if boxed.any() else s_box.sum() * 0.0
    return cls, box


def distillation_loss(teacher: str | torch.nn.Module, stage: str, weight: float = 1.0, temperature: float = 2.0,
                      box_weight: float = 0.5, device: str | torch.device = "cpu"
                      ) -> Callable[[torch.Tensor, tuple, torch.Tensor], torch.Tensor]:
    """The trainer's ``extra_loss``: ``weight * (class term + box_weight * box term)``."""
    net = teacher_net(teacher, stage, device) if isinstance(teacher, str) else teacher.eval()

    def extra(x: torch.Tensor, outputs: tuple, kind: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            target = net(x.to(next(net.parameters()).device))
        cls, box = distillation_terms(outputs, tuple(t.to(x.device) for t in target), kind, temperature)
        return weight * (cls + box_weight * box)

    return extra
