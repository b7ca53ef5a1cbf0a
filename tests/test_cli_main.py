"""The ``tans`` entry point as a process: exit code, output and exit handlers."""

from __future__ import annotations

import subprocess
import sys
from importlib.metadata import version

COMMAND = "import sys; sys.argv = ['tans'] + sys.argv[1:]; from tans.cli.main import main; main(); print('returned')"


def _tans(*args: str, before: str = "") -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", before + COMMAND, *args], capture_output=True, text=True, timeout=120)


def test_the_command_ends_the_process_after_its_exit_handlers_and_output():
    """main() without argv is the command: it exits (no teardown) once atexit handlers ran and output is flushed."""
    handler = "import atexit; atexit.register(lambda: print('handler ran')); "
    done = _tans("--version", before=handler)
    assert done.returncode == 0, done.stderr
    assert done.stdout == f"tans {version('tans')}\nhandler ran\n"  # never 'returned'

    bad = _tans("data", "inspect", "/nonexistent/images")
    assert bad.returncode == 2 and bad.stdout == "" and bad.stderr.startswith("error: ")


def test_main_with_arguments_returns(capsys):
    from tans.cli.main import main

    assert main(["--version"]) == 0
    assert capsys.readouterr().out.startswith("tans ")
