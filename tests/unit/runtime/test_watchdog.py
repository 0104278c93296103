"""The worker watchdog's pure parts: the member file, and passing the worker's exit status on."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from streamlake.config import load_settings
from streamlake.runtime.watchdog import MEMBER_FILE, read_member, record_member, run_watched

ROOT = Path(__file__).resolve().parents[3]


def test_the_member_file_names_the_group_and_member_of_the_worker_that_wrote_it(tmp_path: Path) -> None:
    record_member(tmp_path, "grp", "member-1")
    assert read_member(tmp_path, os.getpid()) == ("grp", "member-1")
    record_member(tmp_path, "grp", "member-2")  # the next assignment replaces it
    assert read_member(tmp_path, os.getpid()) == ("grp", "member-2")
    assert read_member(tmp_path, os.getpid() + 1) is None  # another worker's (an earlier run's) file
    assert not list(tmp_path.glob("*.tmp"))


def test_no_member_file_or_a_broken_one_gives_nothing_to_leave(tmp_path: Path) -> None:
    assert read_member(tmp_path, os.getpid()) is None
    (tmp_path / MEMBER_FILE).write_text("{not json")
    assert read_member(tmp_path, os.getpid()) is None


def test_the_watchdog_exits_with_the_workers_own_status() -> None:
    settings = load_settings(env="test", root=ROOT)
    assert run_watched(["--version"], settings) == 0
    assert run_watched(["no-such-command"], settings) == 2


def test_the_entry_decides_on_a_watchdog_without_importing_faust_or_aiokafka() -> None:
    # The watchdog process imports only this; Faust's CLI would cost every watched worker a second
    # of start-up before it is spawned, and the watchdog 30 MB it never uses.
    probe = "import sys, streamlake.entry; print(sorted({'faust', 'aiokafka', 'mode'} & set(sys.modules)))"
    result = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
