"""One registry of model variants: every net is built through ``create_model``.

A variant is a name, the cascade stage it serves and a builder. Listing variants
needs no torch; building one does.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

from openmtcnn.geometry import INPUT_SIZES, STAGES  # noqa: F401  (the stages every variant serves)


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
_VARIANTS: dict[str, dict[str, str]] = {}


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


def list_variants() -> list[str]:
    """Names of the model families: one registered net per stage each."""
    return sorted(_VARIANTS)


def variant_models(variant: str) -> dict[str, str]:
    """The registry name of each stage's net in a family (e.g. ``"mcu"`` -> pnet-mcu, ...)."""
    try:
        return dict(_VARIANTS[variant])
    except KeyError:
        raise ValueError(f"unknown variant {variant!r}; available: {', '.join(list_variants())}") from None


def register_variant(name: str, models: dict[str, str]) -> None:
    if set(models) != set(STAGES):
        raise ValueError(f"a variant names one model per stage {STAGES}, got {sorted(models)}")
    for stage, model in models.items():
        if model_spec(model).stage != stage:
            raise ValueError(f"{model!r} is not a {stage} model")
    _VARIANTS[name] = dict(models)


def model_overrides(kwargs: dict | None) -> dict:
    """Registry overrides read back from JSON (checkpoints, manifests): lists become tuples."""
    return {k: tuple(v) if isinstance(v, list) else v for k, v in (kwargs or {}).items()}


def overrides_json(kwargs: dict | None) -> dict:
    """Registry overrides as JSON values for checkpoints and manifests: tuples become lists."""
    return {k: list(v) if isinstance(v, tuple) else v for k, v in (kwargs or {}).items()}


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
    model.overrides = dict(overrides)  # e.g. pruned channel widths; kept in checkpoints and manifests
    return model


# The published architectures (P-Net and R-Net without a landmark head, as released).
register(ModelSpec("pnet", "pnet", "PNet", {"landmarks": False}, "published P-Net"))
register(ModelSpec("rnet", "rnet", "RNet", {"landmarks": False}, "published R-Net"))
register(ModelSpec("onet", "onet", "ONet", {"landmarks": True}, "published O-Net"))
# The paper's training recipe has a landmark head on every stage.
register(ModelSpec("pnet-lmk", "pnet", "PNet", {"landmarks": True}, "P-Net with landmark head"))
register(ModelSpec("rnet-lmk", "rnet", "RNet", {"landmarks": True}, "R-Net with landmark head"))

# Light: depthwise-separable convolutions after the first layer (about 3x fewer MACs).
for _stage, _builder in (("pnet", "PNet"), ("rnet", "RNet"), ("onet", "ONet")):
    _widths = {"pnet": {}, "rnet": {"channels": (28, 48, 64, 96)}, "onet": {"channels": (32, 64, 64, 96, 192)}}
    register(ModelSpec(f"{_stage}-lite", _stage, _builder, {"landmarks": True, "separable": True, **_widths[_stage]},
                       f"{_builder} with depthwise-separable convolutions"))
# Large P-Net: twice as wide, to pass fewer false candidates to R-Net.
register(ModelSpec("pnet-large", "pnet", "PNet", {"channels": (20, 32, 64), "landmarks": True},
                   "P-Net twice as wide"))
# Microcontroller: narrow, ReLU (folds into the int8 clamp), sized for 1 MB flash / 128 KB RAM.
register(ModelSpec("pnet-mcu", "pnet", "PNet", {"channels": (8, 12, 16), "landmarks": True, "act": "relu"},
                   "P-Net for a Cortex-M4 (int8, ReLU)"))
register(ModelSpec("rnet-mcu", "rnet", "RNet", {"channels": (16, 24, 32, 64), "landmarks": True, "act": "relu"},
                   "R-Net for a Cortex-M4 (int8, ReLU)"))
register(ModelSpec("onet-mcu", "onet", "ONet", {"channels": (16, 32, 32, 64, 128), "landmarks": True,
                                                "act": "relu"}, "O-Net for a Cortex-M4 (int8, ReLU)"))

# Fast: a cheaper and more selective P-Net (4 x 4 stride-2 stem, depthwise-separable, wider last layer),
# ReLU throughout so that int8 runs fully quantised; trained by distillation from the published nets.
register(ModelSpec("pnet-fast", "pnet", "PNet", {"channels": (16, 32, 64), "separable": True, "act": "relu",
                                                 "stem": "stride"}, "P-Net with a strided stem, separable, ReLU"))

register_variant("published", {"pnet": "pnet", "rnet": "rnet", "onet": "onet"})
register_variant("paper", {"pnet": "pnet-lmk", "rnet": "rnet-lmk", "onet": "onet"})
register_variant("lite", {"pnet": "pnet-lite", "rnet": "rnet-lite", "onet": "onet-lite"})
register_variant("large-pnet", {"pnet": "pnet-large", "rnet": "rnet-lmk", "onet": "onet"})
register_variant("mcu", {"pnet": "pnet-mcu", "rnet": "rnet-mcu", "onet": "onet-mcu"})
