"""Sign-in, roles and the dashboard's control actions, each checked against the user's role and audited.

Every control (review, train, promote, roll back, threshold change, schedule, user admin, purge) goes through a
function here (user changes: ``storage.users``), which first calls ``authorize``: the check lives next to the write,
so a page that forgot to hide a button still cannot change anything without the role. Each action appends an audit
entry (who, what, when) in the same transaction as its write where the repository allows it.
"""

from __future__ import annotations

import logging
import math
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import select

from inspect_app.config.policy import FinetuneSpec
from inspect_app.config.recipes import TrainConfig
from inspect_app.errors import AccessDeniedError
from inspect_app.records import (
    AuditEvent,
    Decision,
    ModelVersion,
    Review,
    Schedule,
    TrainingRun,
    User,
)
from inspect_app.storage import promotions, retention, throttle
from inspect_app.storage.db import Database
from inspect_app.storage.repository import Repository, _model_version_from_row
from inspect_app.storage.runs import RunQueue
from inspect_app.storage.schedules import ScheduleStore, schedule_config
from inspect_app.storage.tables import REVIEW_VERDICTS, USER_ROLES, ModelVersionRow

logger = logging.getLogger(__name__)

# Roles in increasing power; a role may do everything the roles before it may.
ROLE_RANK = {role: rank for rank, role in enumerate(USER_ROLES)}
# The least role each control needs.
ACTION_ROLES: dict[str, str] = {
    "review": "operator",
    "train": "engineer",
    "cancel": "engineer",
    "schedule": "engineer",
    "threshold": "engineer",
    "promote": "engineer",
    "rollback": "engineer",
    "purge": "admin",
    "users": "admin",
}

__all__ = [
    "ACTION_ROLES",
    "ROLE_RANK",
    "add_schedule",
    "allowed",
    "authorize",
    "cancel_run",
    "create_user",
    "enqueue_training",
    "promote_model",
    "purge",
    "remove_schedule",
    "review_inspection",
    "rollback_model",
    "rollback_target",
    "set_model_threshold",
    "set_schedule_enabled",
    "shell_user",
    "sign_in",
]


def shell_user(os_user: str) -> User:
    """The acting user of a CLI command run on a machine that holds the database's credentials, audited as ``cli:NAME``.

    Whoever can run ``inspect-app`` with the plant's database URL can already write every table, so the shell acts
    with every role; what the audit log gains is the operating-system user's name beside each action.
    """
    return User(username=f"cli:{os_user}", role=USER_ROLES[-1])


def allowed(user: User | None, action: str) -> bool:
    """Whether ``user`` (``None`` = nobody signed in) may perform ``action``.

    Raises:
        ValueError: ``action`` is not one of ``ACTION_ROLES``.
    """
    if action not in ACTION_ROLES:
        raise ValueError(f"unknown action {action!r}; allowed: {sorted(ACTION_ROLES)}")
    if user is None or not user.active or user.role not in ROLE_RANK:
        return False
    return ROLE_RANK[user.role] >= ROLE_RANK[ACTION_ROLES[action]]


def authorize(user: User | None, action: str) -> User:
    """Return ``user`` when it may perform ``action``, else refuse.

    Raises:
        AccessDeniedError: nobody is signed in, the user is inactive, or the user's role is below the one the action
            needs (both named).
    """
    if allowed(user, action):
        assert user is not None
        return user
    needed = ACTION_ROLES[action]
    roles = [r for r in USER_ROLES if ROLE_RANK[r] >= ROLE_RANK[needed]]
    if user is None:
        raise AccessDeniedError(f"{action!r} needs a signed-in user with role {' or '.join(roles)}; sign in first")
    if not user.active:
        raise AccessDeniedError(f"user {user.username!r} is inactive and may not {action!r}")
    raise AccessDeniedError(
        f"user {user.username!r} with role {user.role!r} may not {action!r}; needs role {' or '.join(roles)}"
    )


def sign_in(db: Database, username: str, password: str, client: str | None = None,
            now: datetime | None = None) -> User:
    """The active user whose name and password match; both outcomes are audited, failures throttled.

    ``client`` (the browser's address, where known) is throttled beside the name (``storage.throttle``). While either
    is locked the password is not even checked, so a right guess during the back-off is refused too.

    Raises:
        SignInThrottledError: too many recent failures for the name or the client (the minutes left named).
        AccessDeniedError: unknown user, wrong password or inactive user (one message for all, naming the user,
            so that the dashboard does not reveal which names exist).
    """
    throttle.check(db, username, client, now=now)
    repository = Repository(db)
    user = repository.authenticate(username, password)
    if user is None:
        throttle.record_failure(db, username, client, now=now)
        repository.audit(AuditEvent(actor=username or "(empty)", action="auth.sign_in_failed",
                                    details={"client": client} if client else {}))
        raise AccessDeniedError(f"sign-in failed for user {username!r}: unknown user, wrong password or inactive")
    throttle.clear_user(db, username)
    repository.audit(AuditEvent(actor=user.username, action="auth.sign_in", details={"role": user.role}))
    logger.info("user %r signed in (role %s)", user.username, user.role)
    return user


def create_user(
    db: Database,
    username: str,
    role: str,
    password: str,
    actor: User | None = None,
    display_name: str | None = None,
    shell_actor: str | None = None,
) -> User:
    """Create a user with a hashed password, audited (``user.add``) in the same transaction.

    ``actor`` is the signed-in admin when the dashboard creates the user (checked); the CLI passes ``None`` because
    whoever runs it on the server already owns the database, and names that shell user as ``shell_actor``
    (``cli:$USER``) for the audit log.

    Raises:
        AccessDeniedError: ``actor`` is given and is not an admin.
        ValueError: empty name, unknown role (allowed roles named) or a too-short password.
        StorageError: the name is taken.
    """
    if actor is not None:
        authorize(actor, "users")
    if not username or not username.strip() or username != username.strip():
        raise ValueError(f"user name {username!r} must be non-empty without surrounding spaces")
    user = User(username=username, role=role, display_name=display_name)
    who = actor.username if actor is not None else shell_actor or "system"
    Repository(db).add_user(user, password, actor=who)
    return user


def review_inspection(
    db: Database,
    user: User | None,
    inspection_id: int,
    verdict: str,
    defect_class: str | None = None,
    comment: str | None = None,
) -> int:
    """Record a person's verdict (confirm or relabel) on one inspection; returns the review id.

    The repository writes the audit entry in the same transaction as the review.

    Raises:
        AccessDeniedError: the user is not at least an operator.
        ValueError: the verdict is not OK/NG, or an NG verdict names no defect class.
        LookupError: no such inspection.
        StorageError: the inspection already has a review.
    """
    user = authorize(user, "review")
    if verdict not in REVIEW_VERDICTS:
        raise ValueError(f"review verdict {verdict!r} is not one of {list(REVIEW_VERDICTS)}")
    if verdict == Decision.NG.value and not defect_class:
        raise ValueError("an NG verdict needs the defect class the reviewer saw")
    return Repository(db).add_review(
        Review(
            inspection_id=inspection_id,
            verdict=Decision(verdict),
            reviewer=user.username,
            defect_class=defect_class if verdict == Decision.NG.value else None,
            comment=comment or None,
        )
    )


def enqueue_training(
    db: Database,
    user: User | None,
    data_dir: str,
    recipe: dict[str, Any],
    model_name: str | None = None,
    use_reviews: bool = True,
    test_dir: str | None = None,
) -> int:
    """Queue a fine-tuning run for the lifecycle worker; returns the run id.

    The run's ``config`` is a ``FinetuneSpec`` dict (what ``lifecycle.worker`` reads): the recipe as its ``train``
    part, with who asked in ``train.extra.requested_by``; ``use_reviews`` adds the reviewed parts to the data.

    Raises:
        AccessDeniedError: the user is not at least an engineer.
        ValueError: ``data_dir`` (or a given ``test_dir``) is not an existing folder.
        ConfigError: the recipe has an unknown option or a bad value (named).
    """
    user = authorize(user, "train")
    if not data_dir or not Path(data_dir).is_dir():
        raise ValueError(f"training data folder {data_dir!r} does not exist")
    if test_dir and not Path(test_dir).is_dir():
        raise ValueError(f"test folder {test_dir!r} does not exist")
    train = TrainConfig.from_dict(dict(recipe))
    train.extra["requested_by"] = user.username
    spec = FinetuneSpec(train=train, test_dir=str(Path(test_dir).resolve()) if test_dir else None,
                        use_reviews=bool(use_reviews))
    run_id = RunQueue(db).enqueue(spec.to_dict(), str(Path(data_dir).resolve()), model_name=model_name or None)
    Repository(db).audit(AuditEvent(actor=user.username, action="training.enqueue", target=f"training_run:{run_id}",
                                    details={"data_dir": str(data_dir), "model_name": model_name,
                                             "use_reviews": bool(use_reviews), "test_dir": test_dir}))
    return run_id


def cancel_run(db: Database, user: User | None, run_id: int) -> TrainingRun:
    """Cancel a run (``RunQueue.cancel``: a queued one at once, a running one at its next step), audited.

    Raises:
        AccessDeniedError: the user is not at least an engineer.
        LookupError: no run has ``run_id``.
        RunStateError: the run has already finished (its status named).
    """
    user = authorize(user, "cancel")
    run = RunQueue(db).cancel(int(run_id))
    Repository(db).audit(AuditEvent(actor=user.username, action="training.cancel", target=f"training_run:{run_id}",
                                    details={"status": run.status.value,
                                             "cancel_requested": run.cancel_requested}))
    return run


def promote_model(db: Database, user: User | None, name: str, reason: str = "dashboard") -> ModelVersion:
    """Make ``name`` the active model through ``promotions.promote`` (audited with the model it replaced).

    Raises:
        AccessDeniedError: the user is not at least an engineer.
        LookupError: no model version is called ``name`` (known names listed).
    """
    user = authorize(user, "promote")
    return promotions.promote(Repository(db), name, actor=user.username, reason=reason)


def rollback_target(db: Database) -> ModelVersion | None:
    """The model a rollback would re-activate (``promotions.rollback_target``), else ``None``."""
    return promotions.rollback_target(Repository(db))


def rollback_model(db: Database, user: User | None) -> ModelVersion:
    """Re-activate the model the current one replaced, through ``promotions.rollback`` (audited).

    Raises:
        AccessDeniedError: the user is not at least an engineer.
        LookupError: there is no earlier model to roll back to.
    """
    user = authorize(user, "rollback")
    return promotions.rollback(Repository(db), actor=user.username)


def set_model_threshold(db: Database, user: User | None, name: str, threshold: float) -> ModelVersion:
    """Store a new decision threshold on a model version and audit the old and new value, in one transaction.

    Raises:
        AccessDeniedError: the user is not at least an engineer.
        ValueError: the threshold is not a number strictly between 0 and 1.
        LookupError: no model version is called ``name``.
    """
    user = authorize(user, "threshold")
    if not isinstance(threshold, int | float) or math.isnan(threshold) or not 0.0 < float(threshold) < 1.0:
        raise ValueError(f"threshold {threshold!r} must be a number strictly between 0 and 1")
    with db.session() as session:
        row = session.scalar(select(ModelVersionRow).where(ModelVersionRow.name == name))
        if row is None:
            known = session.scalars(select(ModelVersionRow.name).order_by(ModelVersionRow.name)).all()
            raise LookupError(f"model version {name!r} not found; known: {list(known)}")
        old = row.threshold
        row.threshold = float(threshold)
        Repository._audit(session, AuditEvent(actor=user.username, action="model.threshold", target=f"model:{name}",
                                              details={"old": old, "new": float(threshold)}))
        session.flush()
        return _model_version_from_row(row)


def add_schedule(
    db: Database,
    user: User | None,
    name: str,
    cron: str,
    data_dir: str,
    spec: FinetuneSpec | None = None,
    only_if_new_data: bool = False,
    now: datetime | None = None,
) -> Schedule:
    """Create an enabled fine-tuning schedule through ``ScheduleStore`` (the store ``lifecycle.scheduler`` fires).

    Raises:
        AccessDeniedError: the user is not at least an engineer.
        ValueError: empty name or a missing data folder (named).
        ConfigError: the cron expression is not valid for croniter (named, with the expected form).
        StorageError: the name is taken.
    """
    user = authorize(user, "schedule")
    if not name or not name.strip():
        raise ValueError(f"schedule name {name!r} must be non-empty")
    if not data_dir or not Path(data_dir).is_dir():
        raise ValueError(f"schedule data folder {data_dir!r} does not exist")
    spec = spec or FinetuneSpec(model_prefix=name.strip())
    schedule = ScheduleStore(db).add(name.strip(), cron, schedule_config(data_dir, spec, only_if_new_data), now=now)
    Repository(db).audit(AuditEvent(actor=user.username, action="schedule.add", target=f"schedule:{schedule.name}",
                                    details={"cron": schedule.cron, "data_dir": schedule.config["data_dir"],
                                             "only_if_new_data": bool(only_if_new_data)}))
    return schedule


def set_schedule_enabled(db: Database, user: User | None, name: str, enabled: bool) -> Schedule:
    """Pause or resume a schedule through ``ScheduleStore.update`` (resuming recomputes its next run), audited.

    Raises:
        AccessDeniedError: the user is not at least an engineer.
        LookupError: no schedule is called ``name``.
    """
    user = authorize(user, "schedule")
    schedule = ScheduleStore(db).update(name, enabled=bool(enabled))
    Repository(db).audit(AuditEvent(actor=user.username, action="schedule.enable" if enabled
                                    else "schedule.disable", target=f"schedule:{name}"))
    return schedule


def remove_schedule(db: Database, user: User | None, name: str) -> None:
    """Delete a schedule through ``ScheduleStore.remove`` (its runs stay), audited.

    Raises:
        AccessDeniedError: the user is not at least an engineer.
        LookupError: no schedule is called ``name``.
    """
    user = authorize(user, "schedule")
    ScheduleStore(db).remove(name)
    Repository(db).audit(AuditEvent(actor=user.username, action="schedule.remove", target=f"schedule:{name}"))


def purge(
    db: Database,
    user: User | None,
    older_than: str | timedelta,
    keep_files: bool = False,
    *,
    dry_run: bool = False,
    now: datetime | None = None,
) -> retention.PurgeResult:
    """Delete inspections older than ``older_than`` (and, unless ``keep_files``, their files) via ``retention.purge``.

    ``retention.purge`` writes the one audit entry (``db.purge``) with the user as actor, so none is added here. A
    dry run only counts and is not audited, but needs the role too: the count is the first half of the control.
    Passing the dry run's ``now`` to the confirmed purge deletes exactly the rows that were counted.

    Raises:
        AccessDeniedError: the user is not an admin.
        ValueError: ``older_than`` is not an age such as ``90d`` (the text and the allowed units named) or not
            positive, or ``now`` is naive.
    """
    user = authorize(user, "purge")
    age = retention.parse_age(older_than) if isinstance(older_than, str) else older_than
    return retention.purge(db, age, now=now, delete_files=not keep_files, dry_run=dry_run, actor=user.username)
