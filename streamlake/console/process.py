"""Run ``streamlake console`` as a child process (the demo and the browser tests do).

The child prints ``StreamLake console at <url>`` once it listens; :meth:`ConsoleProcess.wait_url`
waits for that line in its log, so nobody guesses with sleeps. :meth:`stop` ends
it (SIGTERM, then SIGKILL) and is safe to call twice.
"""

from __future__ import annotations

import re
import subprocess
import sys
import time
from pathlib import Path

from ..errors import StreamLakeError

__all__ = ["ConsoleProcess", "READY_LINE"]

READY_LINE = re.compile(r"StreamLake console at (\S+)")


class ConsoleProcess:
    """One console child process with its own log file."""

    def __init__(self, root: Path, env: dict[str, str], log_path: Path, port: int, interval: float = 2.0) -> None:
        self.root = root
        self.env = env
        self.log_path = log_path
        self.port = port
        self.interval = interval
        self.proc: subprocess.Popen[bytes] | None = None
        self._log_start = 0  # the log is appended to: only this run's lines count

    def start(self) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:
            self._log_start = log.tell()
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "streamlake", "console", "--port", str(self.port),
                 "--interval", str(self.interval)],
                cwd=self.root, env=self.env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                start_new_session=True)

    def log(self) -> str:
        """This run's part of the log."""
        try:
            with open(self.log_path, "rb") as log:
                log.seek(self._log_start)
                return log.read().decode(errors="replace")
        except FileNotFoundError:
            return ""

    def wait_url(self, timeout: float = 60.0) -> str:
        """The console's URL, once it listens; raises if it exits or does not listen in time."""
        deadline = time.monotonic() + timeout
        while True:
            found = READY_LINE.search(self.log())
            if found:
                return found.group(1)
            if self.proc is None or self.proc.poll() is not None:
                raise StreamLakeError(f"the console exited during start; see {self.log_path}:\n{self.log()[-2000:]}")
            if time.monotonic() > deadline:
                raise StreamLakeError(f"the console did not listen within {timeout:.0f}s; see {self.log_path}")
            time.sleep(0.2)

    def stop(self, timeout: float = 20.0) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
