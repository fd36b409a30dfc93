"""What the ``inspect-app`` sub-commands share: settings from the global flags, printable URLs, the repository, a
progress bar on stderr (tqdm)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

from inspect_app.config.settings import Settings, load_settings
from inspect_app.storage.db import Database, mask_url
from inspect_app.storage.repository import Repository


def settings_of(args: argparse.Namespace) -> Settings:
    """The settings the global ``--home`` and ``--db`` flags (then the environment) give."""
    return load_settings(home=args.home, database_url=args.db)


def shown(url: str) -> str:
    """A database URL as the CLI may print it: password masked (URLs reach terminals, logs and CI output)."""
    return mask_url(url)


def open_database(args: argparse.Namespace) -> Database:
    """The database the global ``--home`` and ``--db`` flags (then the environment) name, at the latest schema."""
    return Database.open(settings_of(args).resolved_database_url)


def open_repository(url: str) -> Repository:
    """The repository over the database at ``url`` (migrated to the latest schema)."""
    return Repository(Database.open(url))


def progress_bar(label: str, unit: str = "img") -> Callable[[int, int], None]:
    """A tqdm bar on stderr counting ``unit``: call it with (done, total). Silent when stderr is not a terminal (CI
    logs, pipes)."""
    from tqdm import tqdm

    bars: list[tqdm] = []  # made at the first call, so that model loading does not count against the rate

    def show(done: int, total: int) -> None:
        if not bars:
            bars.append(tqdm(total=total, desc=label, unit=unit, file=sys.stderr, disable=None))
        bar = bars[0]
        bar.total = total
        bar.update(done - bar.n)
        if done >= total:
            bar.close()

    return show
