"""Entry point of the ``tans`` command: registers the sub-commands and turns errors into one line.

Exit codes: 0 ok; 2 bad input (any :class:`~tans.errors.TansError`, or a usage error); 1 a failed
check (``tans zoo verify``) or an internal error, whose traceback ``--debug`` (or ``TANS_DEBUG=1``)
shows; 130 interrupted.

As the ``tans`` command, the process ends as soon as the command is done: Python's teardown after
PyTorch was loaded (freeing every module, then the native libraries) takes about a second, longer
than many commands, and nothing of it is needed once the exit handlers have run and the output is
flushed (see :func:`exit_now`).
"""

from __future__ import annotations

import atexit
import os
import sys
import threading
import warnings
from typing import Annotated

import typer

from tans import __version__
from tans._errors import TansError, TansWarning
from tans.cli import bench as bench_cmd
from tans.cli import data as data_cmd
from tans.cli import demo as demo_cmd
from tans.cli import finetune as finetune_cmd
from tans.cli import meta_train as meta_train_cmd
from tans.cli import predict as predict_cmd
from tans.cli import search as search_cmd
from tans.cli import zoo as zoo_cmd

_debug = False  # --debug of the current run (reset by main)

app = typer.Typer(
    name="tans",
    help="Task-adaptive neural network search: find the best pretrained network for a new dataset.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)


def _print_version(value: bool) -> None:
    if value:
        print(f"tans {__version__}")
        raise typer.Exit()


@app.callback()
def _options(
    version: Annotated[bool | None, typer.Option("--version", callback=_print_version, is_eager=True,
                                                 help="Print the version and exit.")] = None,
    debug: Annotated[bool, typer.Option("--debug", help="Show the traceback of an internal error.")] = False,
) -> None:
    global _debug
    _debug = debug

app.add_typer(data_cmd.app, name="data")
app.command("demo")(demo_cmd.demo)
app.command("meta-train")(meta_train_cmd.meta_train)
app.command("search")(search_cmd.search)
app.add_typer(zoo_cmd.app, name="zoo")
app.command("finetune")(finetune_cmd.finetune_cmd)
app.command("predict")(predict_cmd.predict_cmd)
app.command("bench")(bench_cmd.bench_cmd)


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the exit code (0 ok, 2 bad input, 1 failed check or internal error).

    Without ``argv`` (the ``tans`` console script, ``python -m tans.cli.main``) the arguments come
    from ``sys.argv`` and the process exits at the end through :func:`exit_now` instead of returning.
    """
    code = _run(argv)
    if argv is None:
        exit_now(code)
    return code


def exit_now(code: int) -> None:
    """End the process with ``code`` without the interpreter's teardown.

    Does what Python's own exit does before the teardown: waits for the threads that are not
    daemons (and runs what :mod:`concurrent.futures` registered for then), runs the :mod:`atexit`
    handlers (Ray's shutdown, multiprocessing's clean-up, temporary folders), flushes stdout and
    stderr; then ``os._exit``. Skipped is freeing every module and object and the native libraries'
    destructors, about a second once PyTorch is imported. Returns, leaving the usual exit, on an
    interpreter without these hooks.
    """
    shutdown_threads = getattr(threading, "_shutdown", None)
    run_exit_handlers = getattr(atexit, "_run_exitfuncs", None)
    if shutdown_threads is None or run_exit_handlers is None or threading.current_thread() is not threading.main_thread():
        return
    shutdown_threads()
    run_exit_handlers()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed pipe: what the normal exit would lose too
            pass
    os._exit(code)


def _run(argv: list[str] | None) -> int:
    global _debug
    _debug = False
    warnings.showwarning = _show_warning
    try:
        # Standalone mode: typer prints usage errors itself and exits 2 through SystemExit.
        app(args=argv, prog_name="tans")
    except TansError as exc:
        # One line whatever a wrapped library message contained.
        print("error: " + " ".join(str(exc).split()), file=sys.stderr)
        return 2
    except (KeyboardInterrupt, EOFError):
        print("error: interrupted", file=sys.stderr)
        return 130
    except SystemExit as exc:  # --help, usage errors: typer has already printed
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except Exception as exc:  # last line of defence: no traceback for users
        if _debugging():
            raise
        print(f"error: internal error: {type(exc).__name__}: {exc} (rerun with --debug for the traceback)",
              file=sys.stderr)
        return 1
    return 0


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """Print tans warnings as one line; other libraries' warnings only with --debug."""
    if issubclass(category, TansWarning):
        print(f"warning: {message}", file=sys.stderr)
    elif _debugging():
        print(f"warning: {category.__name__}: {message} ({filename}:{lineno})", file=sys.stderr)



def _debugging() -> bool:
    return _debug or bool(os.environ.get("TANS_DEBUG"))


if __name__ == "__main__":
    sys.exit(main())
