"""Logging set-up, called by entry points only (library modules just use ``logging.getLogger(__name__)``)."""

from __future__ import annotations

import logging


def setup_logging(verbosity: int = 0) -> None:
    """Log to stderr: warnings by default, info with ``-v``, debug with ``-vv``."""
    level = logging.WARNING if verbosity <= 0 else logging.INFO if verbosity == 1 else logging.DEBUG
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", force=True)
    # Third-party libraries are chatty at INFO; keep them at WARNING unless debugging.
    if verbosity < 2:
        for name in ("PIL", "matplotlib", "timm", "alembic", "httpx", "urllib3"):
            logging.getLogger(name).setLevel(logging.WARNING)
