"""Lifecycle policy: when a candidate model may replace the active one, and what a queued fine-tuning run does."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import Field, field_validator, model_validator

from inspect_app.config.base import ConfigModel, choice
from inspect_app.config.recipes import TrainConfig

# What a run fits: a fine-tuned classifier, or a good-only (PatchCore-class) model (``train --kind anomaly``).
MODEL_KINDS = ("classifier", "anomaly")


class PromotionPolicy(ConfigModel):
    """When a fine-tuned candidate may replace the active model (champion/challenger on one frozen test set).

    Attributes:
        false_reject_rate: the plant's operating point: share of good parts it accepts to reject.
        class_tolerance: largest drop in any defect class's detection rate (at that operating point) accepted.
        min_improvement: how much lower the candidate's escape rate must be; ties are broken by AUROC.
        auto_promote: promote a winning candidate at once; otherwise it stays a candidate for a person to promote.
    """

    what = "promotion option"

    false_reject_rate: float = Field(default=0.01, ge=0, lt=1)
    class_tolerance: float = Field(default=0.05, ge=0, le=1)
    min_improvement: float = Field(default=0.0, ge=0, le=1)
    auto_promote: bool = True


class FinetuneSpec(ConfigModel):
    """What a queued fine-tuning run does, stored as the run's ``config`` (and a schedule's, plus its own keys).

    Attributes:
        train: the training recipe.
        test_dir: frozen test set (class folders) both models are judged on; ``None`` holds out ``test_fraction``
            of the data folder by a hash of each file's path, so a file never moves between test and training.
        test_fraction: share held out when there is no ``test_dir``.
        use_reviews: add reviewed inspections (OK → good, NG → its defect class) to the training data.
        model_prefix: model versions are named ``<prefix>-run<id>``.
        promotion: the promotion policy.
        kind: one of ``MODEL_KINDS``; ``anomaly`` fits a good-only model with the ``anomaly`` recipe (``train`` is
            then unused).
        anomaly: ``AnomalyConfig`` options of a good-only run (checked by the worker, which has the engine).
        update: good-only runs: add the images reviewed OK since the model being refreshed was made to the active
            good-only model's bank (``train --kind anomaly --update``) instead of fitting anew; the data folder
            still gives the frozen test set. Without such a model the run fits anew.
    """

    what = "fine-tuning option"

    train: TrainConfig = Field(default_factory=TrainConfig)
    test_dir: str | None = None
    test_fraction: float = Field(default=0.2, gt=0, lt=1)
    use_reviews: bool = True
    model_prefix: str = "finetune"
    promotion: PromotionPolicy = Field(default_factory=PromotionPolicy)
    kind: Annotated[str, choice(*MODEL_KINDS)] = "classifier"
    anomaly: dict[str, Any] = Field(default_factory=dict)
    update: bool = False

    @field_validator("train", "promotion", "anomaly", mode="before")
    @classmethod
    def _empty_section(cls, value: Any) -> Any:
        return {} if value is None else value

    @model_validator(mode="after")
    def _update_needs_good_only(self) -> FinetuneSpec:
        if self.update and self.kind != "anomaly":
            raise ValueError(f"update refreshes a good-only model: it needs kind 'anomaly', not {self.kind!r}")
        return self

    @field_validator("model_prefix")
    @classmethod
    def _plain_name(cls, value: str) -> str:
        if not value or "/" in value:
            raise ValueError("must be a non-empty name without '/'")
        return value
