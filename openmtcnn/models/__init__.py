"""The nets and the registry of their variants."""
from openmtcnn.models.registry import INPUT_SIZES, STAGES, ModelSpec, create_model, list_models, model_spec, register

__all__ = ["INPUT_SIZES", "STAGES", "ModelSpec", "create_model", "list_models", "model_spec", "register"]
