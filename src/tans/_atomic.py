"""Replace files and folders atomically: a reader sees the old version or the new one, never a mix.

A new version is written beside its destination under a hidden temporary name, then renamed over
it in one step. Temporary files and folders are created with the user's umask (``mkstemp`` and
``mkdtemp`` would make them private, which breaks a zoo or cache shared by a group). A folder that
already exists is exchanged with the new one in one ``renameat2(RENAME_EXCHANGE)`` call where the
system offers it (Linux); elsewhere the old folder is renamed aside first, so a crash in between
leaves it complete under a hidden name.
"""

from __future__ import annotations

import ctypes
import errno
import os
import secrets
import shutil
from collections.abc import Collection, Iterator
from contextlib import contextmanager
from pathlib import Path

from tans._errors import TansError

__all__ = ["check_folder", "new_file", "new_folder", "replace", "temp_beside", "write_bytes"]


def temp_beside(path: str | os.PathLike[str]) -> Path:
    """A hidden, unused name in ``path``'s folder for a new version of ``path`` (nothing is created)."""
    path = Path(path)
    return path.with_name(f".{path.name}.{os.getpid()}-{secrets.token_hex(4)}.tmp")


def replace(tmp: Path, path: Path) -> None:
    """Flush the finished file ``tmp`` to disk and rename it over ``path``, durably."""
    with open(tmp, "rb+") as f:
        os.fsync(f.fileno())
    os.replace(tmp, path)
    _fsync_dir(path.parent)


@contextmanager
def new_file(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path to write the new ``path`` to; it replaces ``path`` when the block ends.

    On an exception the temporary file is removed and ``path`` is left as it was.
    """
    path = Path(path)
    tmp = temp_beside(path)
    try:
        yield tmp
        replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    """Replace the file ``path`` by ``data`` atomically."""
    with new_file(path) as tmp:
        tmp.write_bytes(data)


def check_folder(path: str | os.PathLike[str], replaces: Collection[str]) -> Path:
    """``path`` as a Path, after checking that :func:`new_folder` may replace it.

    Raises
    ------
    TansError
        When ``path`` is a file, or a folder holding an entry whose name is not in ``replaces``
        (tans never deletes what it did not write).
    """
    path = Path(path).expanduser().resolve()  # through a symbolic link: the folder it points to is replaced
    if path.exists() and not path.is_dir():
        raise TansError(f"expected a folder at {path}, got a file; pass another path.")
    if path.is_dir():
        foreign = sorted(p.name for p in path.iterdir() if p.name not in replaces)
        if foreign:
            raise TansError(
                f"cannot replace the folder {path}: it holds {foreign[0]!r}, which tans did not write there; "
                "pass a new or empty folder."
            )
    return path


@contextmanager
def new_folder(path: str | os.PathLike[str], replaces: Collection[str]) -> Iterator[Path]:
    """Yield a new empty folder to fill; it replaces the folder ``path`` when the block ends.

    Parameters
    ----------
    path : path
        The folder to create or replace; see :func:`check_folder` for what may be replaced.
    replaces : collection of str
        Names the old folder may hold (what the caller writes there).

    Raises
    ------
    TansError
        From :func:`check_folder`, before anything is written.
    """
    path = check_folder(path, replaces)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_beside(path)
    tmp.mkdir()
    try:
        yield tmp
        if not _exchange(tmp, path):
            aside = temp_beside(path)
            if path.exists():
                os.rename(path, aside)
            os.rename(tmp, path)
            shutil.rmtree(aside, ignore_errors=True)
        _fsync_dir(path.parent)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)  # the old folder after an exchange, or the unused new one


def _exchange(a: Path, b: Path) -> bool:
    """Swap ``a`` and ``b`` in one step; ``False`` when ``b`` is missing or the system cannot."""
    if os.name != "posix" or not b.exists():
        return False
    renameat2 = getattr(ctypes.CDLL(None, use_errno=True), "renameat2", None)  # glibc 2.28 or later
    if renameat2 is None:
        return False
    at_fdcwd, rename_exchange = -100, 2
    if renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.EINVAL, errno.ENOSYS, errno.ENOTSUP):
        return False
    raise OSError(err, os.strerror(err), str(b))


def _fsync_dir(path: Path) -> None:
    """Make a rename in ``path`` durable (no-op where folders cannot be opened)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
