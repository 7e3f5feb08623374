"""The command line itself: `python -m floatalk`, progress output off a terminal."""

from __future__ import annotations

import subprocess
import sys

from floatalk import __version__
from floatalk.cli import Progress


def test_python_dash_m_floatalk_runs_the_cli():
    out = subprocess.run([sys.executable, "-m", "floatalk", "--version"], capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.strip() == f"floatalk {__version__}"
    bad = subprocess.run([sys.executable, "-m", "floatalk", "generate"], capture_output=True, text=True)
    assert bad.returncode == 2 and "--image" in bad.stderr


def test_progress_off_a_terminal_is_a_few_plain_lines(capsys):
    bar = Progress(False, unit="frame", desc="generating")
    assert not bar.interactive  # pytest's captured stderr is not a terminal
    for done in range(1, 1001):
        bar.update(done, 1000)
    bar.close()
    err = capsys.readouterr().err
    lines = err.splitlines()
    assert "\r" not in err and 2 <= len(lines) <= 11
    assert lines[-1] == "generating: 1000/1000 frames (100%)"


def test_quiet_progress_prints_nothing(capsys):
    bar = Progress(True, unit="frame", desc="generating")
    bar.update(5, 10)
    bar.close()
    assert capsys.readouterr().err == ""
