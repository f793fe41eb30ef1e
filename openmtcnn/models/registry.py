"""One registry of model variants: every net is built through ``create_model``.

A variant is a name, the cascade stage it serves and a builder. Listing variants
needs no torch; building one does.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

STAGES = ("pnet", "rnet", "onet")
INPUT_SIZES = {"pnet": 12, "rnet": 24, "onet": 48}


@dataclass(frozen=True)
class ModelSpec:
    name: str
    stage: str
    builder: str  # class name in openmtcnn.models.nets
    kwargs: dict[str, Any] = field(default_factory=dict)
    description: str = ""

    @property
    def input_size(self) -> int:
        return INPUT_SIZES[self.stage]


_REGISTRY: dict[str, ModelSpec] = {}


def register(spec: ModelSpec) -> ModelSpec:
    if spec.stage not in STAGES:
        raise ValueError(f"unknown stage {spec.stage!r}; expected one of {STAGES}")
    if spec.name in _REGISTRY:
        raise ValueError(f"model {spec.name!r} is already registered")
    _REGISTRY[spec.name] = spec
    return spec


def list_models(stage: str | None = None) -> list[str]:
    """Names of registered variants, optionally only those of one stage."""
    return sorted(n for n, s in _REGISTRY.items() if stage is None or s.stage == stage)


def model_spec(name: str) -> ModelSpec:
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ValueError(f"unknown model {name!r}; available: {', '.join(list_models())}") from None


def create_model(name: str, **overrides: Any):
    """Build the torch module of a registered variant (needs torch)."""
    spec = model_spec(name)
    try:
        from openmtcnn.models import nets
    except ImportError as e:  # torch missing
        raise ImportError("building models needs PyTorch: pip install 'openmtcnn[train]'") from e
    builder: Callable = getattr(nets, spec.builder)
    model = builder(**{**spec.kwargs, **overrides})
    model.spec = spec
    return model


# The published architectures (P-Net and R-Net without a landmark head, as released).
register(ModelSpec("pnet", "pnet", "PNet", {"landmarks": False}, "published P-Net"))
register(ModelSpec("rnet", "rnet", "RNet", {"landmarks": False}, "published R-Net"))
register(ModelSpec("onet", "onet", "ONet", {"landmarks": True}, "published O-Net"))
# The paper's training recipe has a landmark head on every stage.
register(ModelSpec("pnet-lmk", "pnet", "PNet", {"landmarks": True}, "P-Net with landmark head"))
register(ModelSpec("rnet-lmk", "rnet", "RNet", {"landmarks": True}, "R-Net with landmark head"))
