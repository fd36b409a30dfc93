"""Configuration: settings (``settings``), training recipes (``recipes``), pipeline specs (``pipeline``) and the
lifecycle policy (``policy``), all pydantic models on the base in ``base``.

The names below are re-exported so that ``from inspect_app.config import Settings`` keeps working; new code names
the defining module.
"""

from inspect_app.config.base import ConfigModel, choice, read_yaml, validation_message
from inspect_app.config.pipeline import BACKENDS, SOURCE_KINDS, PipelineFile, PipelineSpec
from inspect_app.config.policy import FinetuneSpec, PromotionPolicy
from inspect_app.config.recipes import (
    AMP_MODES,
    AUGMENT_PRESETS,
    CLASS_WEIGHTS,
    LOSSES,
    OPTIMIZERS,
    RESIZE_MODES,
    SAMPLERS,
    SCHEDULES,
    SELECT_METRICS,
    TrainConfig,
    load_recipe,
)
from inspect_app.config.settings import DEVICES, Settings, load_settings

__all__ = [
    "AMP_MODES", "AUGMENT_PRESETS", "BACKENDS", "CLASS_WEIGHTS", "DEVICES", "LOSSES", "OPTIMIZERS", "RESIZE_MODES",
    "SAMPLERS", "SCHEDULES", "SELECT_METRICS", "SOURCE_KINDS", "ConfigModel", "FinetuneSpec", "PipelineFile",
    "PipelineSpec", "PromotionPolicy", "Settings", "TrainConfig", "choice", "load_recipe", "load_settings",
    "read_yaml", "validation_message",
]
