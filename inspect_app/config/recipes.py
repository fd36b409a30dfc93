"""Training recipes: ``TrainConfig`` (fine-tuning a classifier) and ``load_recipe`` for ``recipes/*.yaml``.

The good-only anomaly recipe lives beside its engine (``inspect_app.engine.anomaly_config``) and uses the same base.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Self

from pydantic import Field, field_validator, model_validator

from inspect_app.config.base import ConfigModel, choice, read_yaml
from inspect_app.config.settings import DEVICES

OPTIMIZERS = ("adamw", "adam", "sgd")
RESIZE_MODES = ("resize", "letterbox")
AUGMENT_PRESETS = ("none", "light", "inspection", "strong")
LOSSES = ("ce", "mse")
CLASS_WEIGHTS = ("none", "sqrt", "balanced")
SAMPLERS = ("shuffle", "balanced")
SCHEDULES = ("cosine", "step")
AMP_MODES = ("auto", "off", "bf16", "fp16")
SELECT_METRICS = ("macro_recall", "escape_rate", "accuracy", "loss")


class TrainConfig(ConfigModel):
    """A fine-tuning recipe, saved with every run.

    Attributes:
        backbone: backbone name for ``create_backbone``.
        input_size: square input side in pixels.
        epochs: passes over the training split.
        batch_size: images per optimisation step.
        lr: peak learning rate of the head; the backbone uses ``lr * backbone_lr_scale``.
        weight_decay: L2 penalty applied as decoupled weight decay (not on norms and biases).
        optimizer: one of ``OPTIMIZERS``.
        val_fraction: share of each class held out for validation.
        seed: seed for the split, initialisation and augmentation.
        pretrained: start from pretrained ImageNet weights.
        num_workers: DataLoader worker processes.
        device: ``auto``, ``cpu`` or ``cuda``.
        max_train_images: cap on training images (quick trials); ``None`` uses all.
        freeze_bn_stats: keep the pretrained BatchNorm statistics fixed; small factory batches estimate them badly.
        resize_mode: ``resize`` (stretch to a square) or ``letterbox`` (keep the aspect ratio, pad with black).
        augment: augmentation preset, one of ``AUGMENT_PRESETS``.
        mixup: Beta(alpha, alpha) mixup strength; 0 switches it off.
        cutmix: Beta(alpha, alpha) cutmix strength; 0 switches it off.
        loss: ``ce`` (classes) or ``mse`` (numeric ``severity`` column of a CSV manifest, one output).
        label_smoothing: cross-entropy label smoothing.
        class_weights: ``none``, ``sqrt`` or ``balanced`` inverse-frequency weights in the loss.
        sampler: ``shuffle`` or ``balanced`` (every class drawn equally often).
        l1: coefficient of an explicit L1 penalty on the weights (norms and biases excluded).
        momentum: SGD momentum (``nesterov`` for Nesterov's variant).
        schedule: ``cosine`` (with linear warm-up) or ``step``.
        warmup_epochs: linear warm-up length in epochs (fractions allowed).
        step_epochs: ``step`` schedule: multiply the rate by ``step_gamma`` every this many epochs.
        layer_decay: layer-wise rate decay per backbone stage (``None``: one backbone rate).
        probe_epochs: first epochs train the head only (linear probe), then the whole network.
        ema: decay of an exponential moving average of the weights (0 = off); the average is evaluated and saved.
        grad_clip: clip the gradient norm to this value (``None`` = off).
        amp: mixed precision on CUDA: ``auto`` (bf16 where supported), ``off``, ``bf16``, ``fp16``.
        channels_last: NHWC memory layout (faster for convolutions on CUDA and on recent CPUs).
        compile: wrap the model in ``torch.compile``.
        cache_images: decode and resize every image once and keep it in memory (uint8).
        select_metric: early stopping and best-epoch choice: one of ``SELECT_METRICS``.
        false_reject_rate: operating point of the escape-rate metric.
        patience: stop after this many epochs without improvement (``None`` = never).
        folds: k of k-fold cross-validation (``None`` = one stratified split by ``val_fraction``).
        fold: which fold is the validation set when ``folds`` is set.
        time_budget_s: wall-time budget; after the first epoch the run shortens its epoch count (and its schedule)
            to end within it.
        good_class: the class of defect-free parts; ``None`` finds it from the folder names (``good``, ``ok``,
            ``pass``, ``normal``, ``no_defect``, or a name that begins or ends with one), ``"none"`` says there is
            none (defect typing: every class is a defect).
    """

    what = "training option"

    backbone: str = "efficientnet_lite0"
    input_size: int = Field(default=224, ge=1)
    epochs: int = Field(default=20, ge=1)
    batch_size: int = Field(default=16, ge=1)
    lr: float = Field(default=1e-3, gt=0)
    backbone_lr_scale: float = 0.3
    weight_decay: float = Field(default=0.01, ge=0)
    optimizer: Annotated[str, choice(*OPTIMIZERS)] = "adamw"
    val_fraction: float = Field(default=0.2, gt=0, lt=1)
    seed: int = 0
    pretrained: bool = True
    num_workers: int = 0
    device: Annotated[str, choice(*DEVICES)] = "auto"
    max_train_images: int | None = None
    freeze_bn_stats: bool = True
    resize_mode: Annotated[str, choice(*RESIZE_MODES)] = "resize"
    augment: Annotated[str, choice(*AUGMENT_PRESETS)] = "inspection"
    mixup: float = Field(default=0.0, ge=0)
    cutmix: float = Field(default=0.0, ge=0)
    loss: Annotated[str, choice(*LOSSES)] = "ce"
    label_smoothing: float = Field(default=0.1, ge=0, lt=1)
    class_weights: Annotated[str, choice(*CLASS_WEIGHTS)] = "sqrt"
    sampler: Annotated[str, choice(*SAMPLERS)] = "shuffle"
    l1: float = Field(default=0.0, ge=0)
    momentum: float = 0.9
    nesterov: bool = True
    schedule: Annotated[str, choice(*SCHEDULES)] = "cosine"
    warmup_epochs: float = Field(default=0.5, ge=0)
    step_epochs: int = 3
    step_gamma: float = 0.1
    layer_decay: float | None = Field(default=None, gt=0, le=1)
    probe_epochs: int = Field(default=0, ge=0)
    ema: float = Field(default=0.99, ge=0, lt=1)
    grad_clip: float | None = 5.0
    amp: Annotated[str, choice(*AMP_MODES)] = "auto"
    channels_last: bool = True
    compile: bool = False
    cache_images: bool = True
    select_metric: Annotated[str, choice(*SELECT_METRICS)] = "macro_recall"
    false_reject_rate: float = Field(default=0.01, ge=0, lt=1)
    patience: int | None = None
    folds: int | None = Field(default=None, ge=2)
    fold: int = 0
    time_budget_s: float | None = None
    good_class: str | None = None
    extra: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _fold_in_range(self) -> Self:
        if self.folds is not None and not 0 <= self.fold < self.folds:
            raise ValueError(f"fold {self.fold!r} must lie in [0, folds {self.folds!r})")
        return self

    @field_validator("extra", mode="before")
    @classmethod
    def _no_extra_is_empty(cls, value: Any) -> Any:
        return {} if value is None else value


def load_recipe(path: Path | None, **overrides: Any) -> TrainConfig:
    """A recipe file (or the defaults when ``path`` is None) with the non-``None`` overrides (CLI flags) applied."""
    if not path:
        return TrainConfig().with_overrides(**overrides)
    base = TrainConfig.from_dict(read_yaml(Path(path)), where=f"recipe file {str(path)!r}")
    return base.with_overrides(**overrides)
