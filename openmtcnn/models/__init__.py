"""The nets and the registry of their variants (one net per stage; families of three)."""
from openmtcnn.models.registry import (
                                       INPUT_SIZES,
                                       STAGES,
                                       ModelSpec,
                                       create_model,
                                       list_models,
                                       list_variants,
                                       model_spec,
                                       register,
                                       register_variant,
                                       variant_models,
)

__all__ = ["INPUT_SIZES", "STAGES", "ModelSpec", "create_model", "list_models", "list_variants", "model_spec",
           "register", "register_variant", "variant_models"]
