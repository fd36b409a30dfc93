"""A real ``inspect-app dashboard`` in a child process, for the browser tests and the screenshot scripts.

Torch- and Streamlit-free at import time (the child imports Streamlit), so any test module or script may import it.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator, Mapping
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    """A loopback port nothing listens on now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextlib.contextmanager
def serve_dashboard(home: Path, *, database_url: str | None = None, settings: Mapping[str, str] | None = None,
                    ready_s: float = 120) -> Iterator[str]:
    """``inspect-app --home HOME [--db URL] dashboard`` on a free loopback port; yields its URL once it answers.

    The child sees none of this process's ``INSPECT_*`` variables, only ``settings`` (e.g.
    ``INSPECT_DASHBOARD_OPEN_VIEWING``), so a developer's environment cannot change what a test or screenshot
    shows. Its output goes to ``HOME/dashboard-PORT.log``, named in the error when it exits or does not answer
    within ``ready_s`` seconds. Stopped (its whole process group) on leaving.
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith("INSPECT_")}
    env.update(settings or {})
    env["PYTHONPATH"] = str(REPO_ROOT)
    port = free_port()
    command = [sys.executable, "-m", "inspect_app", "--home", str(home)]
    if database_url:
        command += ["--db", database_url]
    command += ["dashboard", "--port", str(port)]
    log_path = home / f"dashboard-{port}.log"
    url = f"http://127.0.0.1:{port}/"
    with open(log_path, "w") as log:
        process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            _wait_until_answering(process, url, log_path, ready_s)
            yield url
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, 15)
            process.wait(timeout=30)


def _wait_until_answering(process: subprocess.Popen[bytes], url: str, log_path: Path, ready_s: float) -> None:
    """Poll ``url`` until it answers; fail early, naming the log, when the dashboard exits or stays silent."""
    end = time.monotonic() + ready_s
    while True:
        try:
            with urllib.request.urlopen(url, timeout=1):
                return
        except OSError:
            if process.poll() is not None:
                raise RuntimeError(f"the dashboard exited with {process.returncode}; see {log_path}") from None
            if time.monotonic() > end:
                raise RuntimeError(f"the dashboard did not answer on {url} within {ready_s:.0f} s; "
                                   f"see {log_path}") from None
            time.sleep(0.3)
