"""Files and folders at a local path or at an fsspec URL (``memory://``, ``s3://``, ``hf://``...).

A plain path or a ``file://`` URL is local: written through :mod:`tans._atomic` (beside its
destination, then renamed into place) and read in place. Any other URL is reached through the
fsspec backend installed for its protocol: written to a local temporary copy and uploaded once
complete (object stores have no atomic rename; a reader of a half-uploaded searcher artifact
gets a checksum error), read by downloading a temporary copy. Temporary copies are always
removed. A URL no backend can reach is a :class:`~tans._errors.TansError`.
"""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Collection, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from tans import _atomic
from tans._errors import TansError

__all__ = ["Location", "is_file", "join", "local_copy", "new_file", "new_folder", "normalize", "read_bytes",
           "resolve"]

Location = str | os.PathLike[str]
_URL = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://")


def resolve(location: Location) -> tuple[Any, Path | str]:
    """``(None, Path)`` for a local path or ``file://`` URL; ``(filesystem, path in it)`` for another URL.

    Raises
    ------
    TansError
        When no installed fsspec backend serves the URL's protocol.
    """
    where = normalize(location)
    if isinstance(where, Path):
        return None, where
    from fsspec.core import url_to_fs

    try:
        fs, path = url_to_fs(location)
    except (ImportError, ValueError) as exc:
        raise TansError(
            f"cannot reach {location!r}: {exc}; expected a local path or a URL whose fsspec backend is installed "
            "(e.g. s3:// needs s3fs, hf:// needs huggingface_hub)."
        ) from None
    if "file" in ((fs.protocol,) if isinstance(fs.protocol, str) else fs.protocol):
        return None, Path(path)
    return fs, path


def normalize(location: Location) -> Path | str:
    """A path as a :class:`~pathlib.Path` (``~`` expanded), a URL as the string given."""
    return location if isinstance(location, str) and _URL.match(location) else Path(location).expanduser()


def join(location: Location, name: str) -> Path | str:
    """``name`` inside the folder ``location`` (a path stays a path, a URL a URL)."""
    where = normalize(location)
    return f"{where.rstrip('/')}/{name}" if isinstance(where, str) else where / name


def is_file(location: Location) -> bool:
    """Whether a file exists at ``location``."""
    fs, path = resolve(location)
    return path.is_file() if fs is None else _remote(location, fs.isfile, path)


def read_bytes(location: Location) -> bytes:
    """The content of the file at ``location``.

    Raises
    ------
    FileNotFoundError
        When there is none (the caller says what was expected there).
    """
    fs, path = resolve(location)
    if fs is None:
        return path.read_bytes()
    if not _remote(location, fs.isfile, path):
        raise FileNotFoundError(location)
    return _remote(location, fs.cat_file, path)


@contextmanager
def local_copy(location: Location) -> Iterator[Path]:
    """A local file with the content of ``location``: the path itself when local (whether or not a file
    is there), else a downloaded copy.

    Raises
    ------
    FileNotFoundError
        When there is no file at the URL ``location``.
    """
    fs, path = resolve(location)
    if fs is None:
        yield path
        return
    if not _remote(location, fs.isfile, path):
        raise FileNotFoundError(location)
    with tempfile.TemporaryDirectory(prefix="tans-") as tmp:
        copy = Path(tmp) / Path(path).name
        _remote(location, fs.get_file, path, str(copy))
        yield copy


@contextmanager
def new_file(location: Location) -> Iterator[Path]:
    """Yield a local path to write; its content replaces the file at ``location`` when the block ends.

    On an exception nothing is written at ``location``.
    """
    fs, path = resolve(location)
    if fs is None:
        path.parent.mkdir(parents=True, exist_ok=True)
        with _atomic.new_file(path) as tmp:
            yield tmp
        return
    with tempfile.TemporaryDirectory(prefix="tans-") as tmp:
        written = Path(tmp) / Path(path).name
        yield written
        _remote(location, fs.put_file, str(written), path)


@contextmanager
def new_folder(location: Location, replaces: Collection[str]) -> Iterator[Path]:
    """Yield a new empty local folder to fill; its files replace those of the folder ``location``.

    A local folder is swapped in whole by :func:`tans._atomic.new_folder` (which refuses a folder
    holding names outside ``replaces``); at a URL the files are uploaded one by one.
    """
    fs, path = resolve(location)
    if fs is None:
        with _atomic.new_folder(path, replaces) as tmp:
            yield tmp
        return
    with tempfile.TemporaryDirectory(prefix="tans-") as tmp:
        yield Path(tmp)
        for file in sorted(Path(tmp).iterdir()):
            _remote(location, fs.put_file, str(file), f"{str(path).rstrip('/')}/{file.name}")


def _remote(location: Location, call, *args):
    """``call(*args)`` on a remote store, its failures as one line naming ``location``."""
    try:
        return call(*args)
    except (OSError, NotImplementedError, ValueError) as exc:
        raise TansError(f"cannot access {location!r}: {exc or type(exc).__name__}.") from None
