"""The reject hook: a reject signal per NG part to the line's PLC gateway, with its own ordered spool and journal."""

from __future__ import annotations

import json
import logging
import os
import shlex
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from inspect_app.engine.sink_base import SinkItem, append_jsonl, inspection_to_dict, row_key
from inspect_app.errors import ConfigError, SinkError
from inspect_app.records import Decision
from inspect_app.redact import redact_url

logger = logging.getLogger(__name__)


def _no_url(text: str, url: str) -> str:
    """``text`` with ``url`` replaced by its redacted form (error texts can quote the URL with its credentials)."""
    return text.replace(url, redact_url(url))


class RejectHookSink:
    """Sends a reject signal for each NG part to the line's PLC gateway: an HTTP webhook or a local command.

    The webhook receives a JSON POST; the command receives the same JSON on stdin (run without a shell). A signal that
    still fails after ``retries`` is appended to ``spool_path`` and replayed, oldest first, before newer signals once
    the endpoint answers again, so none is lost and the order is kept.

    Args:
        webhook: URL to POST to.
        command: command line to run per signal (exit status 0 = delivered).
        spool_path: JSON Lines file of undelivered signals.
        decisions: decisions that trigger a signal (default NG only).
        retries: extra attempts per signal before spooling.
        backoff_s: first delay between attempts (doubled per attempt).
        timeout_s: per-attempt timeout.
        sleep: injected sleep (tests).
    """

    def __init__(
        self,
        spool_path: Path,
        webhook: str | None = None,
        command: str | None = None,
        decisions: Sequence[str] = (Decision.NG.value,),
        retries: int = 2,
        backoff_s: float = 0.2,
        timeout_s: float = 2.0,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if (webhook is None) == (command is None):
            raise ConfigError("reject hook needs exactly one of 'webhook' or 'command'")
        allowed = [d.value for d in Decision]
        bad = [d for d in decisions if d not in allowed]
        if bad:
            raise ConfigError(f"reject hook decision(s) {bad} are not among {allowed}")
        self.webhook = webhook
        self.command = shlex.split(command) if command else None
        self.spool_path = Path(spool_path)
        self.decisions = frozenset(decisions)
        self.retries = retries
        self.backoff_s = backoff_s
        self.timeout_s = timeout_s
        self._sleep = sleep
        self.delivered = 0
        self.spooled = 0
        # Parts already signalled, kept next to the spool so a re-run after kill -9 does not reject a part twice
        # (the payload carries the content hash too, for a gateway that wants to deduplicate the narrow window
        # between a delivery and its journal line).
        self.journal_path = self.spool_path.with_name(f"{self.spool_path.stem}.delivered")
        self._signalled: set[str] = set()
        if self.journal_path.is_file():
            self._signalled = set(self.journal_path.read_text(encoding="utf-8").splitlines())

    def _journal(self, payload: dict[str, Any]) -> None:
        key = json.dumps(row_key(payload))
        self._signalled.add(key)
        self.journal_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.journal_path, "a", encoding="utf-8") as fh:
            fh.write(key + "\n")
            fh.flush()
            os.fsync(fh.fileno())

    def _deliver_once(self, payload: dict[str, Any]) -> None:
        body = json.dumps(payload).encode("utf-8")
        if self.webhook is not None:
            request = urllib.request.Request(
                self.webhook, data=body, headers={"Content-Type": "application/json"}, method="POST"
            )
            try:
                with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
                    if not 200 <= response.status < 300:
                        raise SinkError(f"webhook {redact_url(self.webhook)} answered HTTP {response.status}")
            except (urllib.error.URLError, OSError) as exc:
                # The error text can quote the URL (with its credentials): name the redacted URL and the error's kind.
                reason = getattr(exc, "reason", None) or exc.__class__.__name__
                raise SinkError(f"webhook {redact_url(self.webhook)} failed: {_no_url(str(reason), self.webhook)}") \
                    from exc
            return
        # __init__ takes exactly one of webhook and command, so without a webhook the command is set.
        assert self.command is not None
        try:
            done = subprocess.run(self.command, input=body, capture_output=True, timeout=self.timeout_s, check=False)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise SinkError(f"reject command {self.command} failed: {exc}") from exc
        if done.returncode != 0:
            raise SinkError(f"reject command {self.command} exited with status {done.returncode}")

    def _deliver(self, payload: dict[str, Any], retries: int) -> bool:
        delay = self.backoff_s
        for attempt in range(retries + 1):
            try:
                self._deliver_once(payload)
                self.delivered += 1
                self._journal(payload)
                return True
            except SinkError as exc:
                logger.warning("reject signal for %s not delivered (attempt %d): %s", payload["image_path"],
                               attempt + 1, exc)
                if attempt < retries:
                    self._sleep(delay)
                    delay *= 2.0
        return False

    def pending(self) -> list[dict[str, Any]]:
        """Signals waiting in the spool, oldest first."""
        if not self.spool_path.is_file():
            return []
        lines = self.spool_path.read_text(encoding="utf-8").splitlines()
        return [json.loads(line) for line in lines if line.strip()]

    def _replay(self) -> bool:
        """Deliver spooled signals in order; True when the spool is empty afterwards."""
        waiting = self.pending()
        if not waiting:
            return True
        for i, payload in enumerate(waiting):
            # One attempt each: the endpoint was down moments ago, so do not stall the line on a long retry loop.
            if not self._deliver(payload, retries=0):
                remaining = waiting[i:]
                tmp = self.spool_path.with_name(f".{self.spool_path.name}.tmp")
                tmp.write_text("".join(json.dumps(p) + "\n" for p in remaining), encoding="utf-8")
                os.replace(tmp, self.spool_path)
                return False
        self.spool_path.unlink()
        logger.info("replayed %d spooled reject signal(s)", len(waiting))
        return True

    def write(self, items: Sequence[SinkItem]) -> Sequence[SinkItem]:
        """Signal each item whose decision triggers a reject; spool what cannot be delivered."""
        spooled = {json.dumps(row_key(p)) for p in self.pending()}
        payloads = [
            payload for payload in (inspection_to_dict(i) for i, _, _ in items if i.decision.value in self.decisions)
            if (key := json.dumps(row_key(payload))) not in self._signalled and key not in spooled
        ]
        if not payloads:
            return items
        clear = self._replay()
        failed: list[dict[str, Any]] = []
        for payload in payloads:
            # Once anything is spooled, newer signals queue behind it so the PLC sees them in order.
            if not clear or failed or not self._deliver(payload, self.retries):
                failed.append(payload)
        if failed:
            append_jsonl(self.spool_path, failed)
            self.spooled += len(failed)
            logger.error("%d reject signal(s) spooled to %s", len(failed), self.spool_path)
        return items

    def close(self) -> None:
        """Try once more to empty the spool before the process ends."""
        self._replay()
