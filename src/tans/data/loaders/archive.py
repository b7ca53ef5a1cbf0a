"""Load a ``.zip`` of an ImageFolder, extracted safely into the tans cache, or read it in place."""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import stat
import uuid
import zipfile
import zlib
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path, PurePath, PurePosixPath
from typing import IO, NoReturn, Unpack

from tans._errors import ConfigError, DatasetError
from tans.data.dataset import Dataset
from tans.data.loaders._common import (
    META_FILE,
    LoadOptions,
    list_dir,
    natural_key,
    provenance,
    read_meta,
    require_path,
    visible,
)
from tans.data.loaders.folder import load_imagefolder
from tans.paths import cache_dir

__all__ = ["MAX_ZIP_BYTES", "ZIP_CACHE_BYTES", "ZipTree", "extract_zip", "load_zip", "read_zip", "zip_cache_bytes"]

# A .zip may expand to at most this many bytes (guards against zip bombs).
MAX_ZIP_BYTES = 4 * 2**30
# The extracted zips together keep at most this many bytes ($TANS_ZIP_CACHE_BYTES): beyond it the
# least recently used are deleted (the one in use always stays).
ZIP_CACHE_BYTES = 8 * 2**30


def load_zip(path: str | os.PathLike, *, max_bytes: int = MAX_ZIP_BYTES, **options: Unpack[LoadOptions]) -> Dataset:
    """Load a ``.zip`` of an ImageFolder (see :func:`load_imagefolder`), extracted safely.

    Parameters
    ----------
    path : str or PathLike
        The zip file.
    max_bytes : int
        Refuse archives that would expand to more bytes than this.
    **options
        As for :func:`load_imagefolder`; ``name`` defaults to the zip file's stem.

    Returns
    -------
    Dataset
        With ``source`` the zip's absolute path.

    Raises
    ------
    DatasetError
        For an unsafe or damaged archive, or any problem :func:`load_imagefolder` raises for.
    """
    path = require_path(path)
    root = extract_zip(path, max_bytes=max_bytes)
    options["name"] = options.get("name") or provenance(path, read_meta(root), None)["name"]
    dataset = load_imagefolder(root, **options)
    return replace(dataset, source=str(path.absolute()))


def extract_zip(path: str | os.PathLike, *, max_bytes: int = MAX_ZIP_BYTES) -> Path:
    """Extract a zip into ``cache_dir("zips")/<sha256 of the zip>`` and return the dataset root.

    Every entry is checked before anything is written: absolute paths, ``..`` that would leave
    the target, symbolic links, a file that other entries need as a folder and a total size above
    ``max_bytes`` are refused. ``__MACOSX``
    and hidden entries are skipped. Extraction goes to a temporary folder renamed into place, so
    a crash or a second process never leaves a half-extracted cache entry. When the archive holds a
    single top-level folder, the root is that folder. The cache keeps at most
    :func:`zip_cache_bytes` of extracted zips, deleting the least recently used first.

    Parameters
    ----------
    path : str or PathLike
        The zip file.
    max_bytes : int
        Largest total uncompressed size allowed.

    Returns
    -------
    Path
        The extracted folder to load as an ImageFolder.

    Raises
    ------
    DatasetError
        For a damaged, unsafe or too large archive, or an unreadable ``$TANS_ZIP_CACHE_BYTES``.
    """
    path = require_path(path)
    digest = _sha256(path)
    target = cache_dir("zips") / digest
    if not target.is_dir():
        with _zip_errors(path), zipfile.ZipFile(path) as zf:
            members = _safe_members(zf, path, max_bytes)
            tmp = target.with_name(f".{digest}.tmp-{uuid.uuid4().hex[:8]}")
            tmp.mkdir()
            try:
                _extract_members(zf, members, tmp, path, max_bytes)
                try:
                    tmp.rename(target)
                except OSError:
                    if not target.is_dir():  # not a concurrent extraction of the same zip
                        raise
            finally:
                if tmp.exists():
                    shutil.rmtree(tmp, ignore_errors=True)
    limit = zip_cache_bytes()
    try:
        os.utime(target)  # its modification time says when it was last used
        _evict(target, limit)
    except OSError:
        pass  # best effort: another process may be evicting the same entries
    return _dataset_root(target, list_dir)


@contextmanager
def read_zip(path: str | os.PathLike, *, max_bytes: int = MAX_ZIP_BYTES) -> Iterator[ZipTree]:
    """Open a zip to read in place, nothing written: its entries are checked as :func:`extract_zip` checks them.

    Parameters
    ----------
    path, max_bytes
        As for :func:`extract_zip`.

    Yields
    ------
    ZipTree
        The archive's folders and files (valid until the ``with`` block ends).

    Raises
    ------
    DatasetError
        For a damaged, unsafe or too large archive, also when an entry fails to read inside the block.
    """
    path = require_path(path)
    with _zip_errors(path), zipfile.ZipFile(path) as zf:
        yield ZipTree(zf, _safe_members(zf, path, max_bytes))


class ZipTree:
    """The checked entries of an open zip, listed like folders on disk (:func:`list_dir`), without links.

    Paths are :class:`~pathlib.PurePosixPath` relative to the archive's top; ``root`` is the dataset
    root, as :func:`extract_zip` would return it.
    """

    def __init__(self, zf: zipfile.ZipFile, members: list[_Member]) -> None:
        self._zf = zf
        self._files: dict[PurePosixPath, zipfile.ZipInfo] = {}  # a later duplicate wins, as when extracting
        self._children: dict[PurePath, dict[PurePath, bool]] = defaultdict(dict)  # folder -> {entry: is a folder}
        for info, rel in members:
            if not info.is_dir():
                self._files[rel] = info
            self._children[rel.parent][rel] = info.is_dir()
            for folder in rel.parents[:-1]:  # the folders it implies, up to the top
                self._children[folder.parent][folder] = True
        self.root = _dataset_root(PurePosixPath(), self.list_dir)

    def list_dir(self, folder: PurePath) -> tuple[list[PurePath], list[PurePath]]:
        """Visible sub-folders and files of ``folder``, each in natural order."""
        children = self._children.get(folder, {})
        entries = sorted((p for p in children if visible(p.name)), key=natural_key)
        return [p for p in entries if children[p]], [p for p in entries if not children[p]]

    def open(self, file: PurePath) -> IO[bytes]:
        """A seekable stream of one file's bytes, capped at its declared size."""
        return self._zf.open(self._files[file])


def _dataset_root(root: PurePath, listing: Callable[[PurePath], tuple[list, list]]) -> PurePath:
    while True:  # descend into a single top-level folder (zip of "mydata/<class>/...")
        dirs, files = listing(root)
        if len(dirs) == 1 and not files and dirs[0].name != META_FILE:
            root = dirs[0]
        else:
            return root


@contextmanager
def _zip_errors(path: Path) -> Iterator[None]:
    """Turn the errors of a damaged archive into one DatasetError."""
    try:
        yield
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, NotImplementedError, zlib.error) as exc:
        raise DatasetError(
            f"Cannot read {str(path)!r} as a zip archive ({' '.join(str(exc).split())}); expected a "
            "valid .zip of an ImageFolder: re-create the archive."
        ) from exc


_Member = tuple[zipfile.ZipInfo, PurePosixPath]  # an archive entry and where it will be written


def _safe_members(zf: zipfile.ZipFile, path: Path, max_bytes: int) -> list[_Member]:
    """Every entry with the relative path it will get; raises on any unsafe entry."""
    members = []
    total = 0
    for info in zf.infolist():
        raw = info.filename.replace("\\", "/")
        parts = PurePosixPath(raw).parts
        if raw.startswith("/") or (parts and re.fullmatch(r"[A-Za-z]:", parts[0])):
            _unsafe(path, info.filename, "an absolute path")
        clean: list[str] = []
        for part in parts:
            if part == "..":
                if not clean:
                    _unsafe(path, info.filename, "a '..' that leaves the extraction folder")
                clean.pop()
            elif part not in (".", ""):
                clean.append(part)
        mode = info.external_attr >> 16
        if stat.S_ISLNK(mode):
            _unsafe(path, info.filename, "a symbolic link")
        if not clean or clean[0] == "__MACOSX" or any(p.startswith(".") for p in clean):
            continue  # Finder resource forks and hidden files are never data
        total += info.file_size
        if total > max_bytes:
            _too_large(path, max_bytes)
        members.append((info, PurePosixPath(*clean)))
    files = {rel: info.filename for info, rel in members if not info.is_dir()}
    for info, rel in members:
        clash = next((p for p in rel.parents if p in files), rel if info.is_dir() and rel in files else None)
        if clash is not None:
            raise DatasetError(
                f"Refusing zip {str(path)!r}: entry {info.filename!r} needs {files[clash]!r} to be a folder, but "
                "the archive also holds it as a file; re-create the archive from the dataset folder."
            )
    return members


def _unsafe(path: Path, entry: str, what: str) -> NoReturn:
    raise DatasetError(
        f"Refusing zip {str(path)!r}: entry {entry!r} is {what}, which could write outside the "
        "extraction folder; expected relative paths inside the archive: re-create it from the "
        "dataset folder (e.g. 'cd parent && zip -r data.zip data')."
    )


def _too_large(path: Path, max_bytes: int) -> NoReturn:
    raise DatasetError(
        f"Zip {str(path)!r} expands to more than {max_bytes:,} bytes; expected a smaller "
        "archive: unpack it yourself and pass the folder, or raise max_bytes."
    )


def _extract_members(
    zf: zipfile.ZipFile, members: list[_Member], dest: Path, path: Path, max_bytes: int
) -> None:
    """Write the checked entries under ``dest``, counting real bytes (headers can lie)."""
    written = 0
    for info, rel in members:
        out = dest.joinpath(*rel.parts)
        if info.is_dir():  # kept, so an empty class folder is reported as such
            out.mkdir(parents=True, exist_ok=True)
            continue
        out.parent.mkdir(parents=True, exist_ok=True)
        with zf.open(info) as src, open(out, "wb") as dst:
            while chunk := src.read(1 << 20):
                written += len(chunk)
                if written > max_bytes:
                    _too_large(path, max_bytes)
                dst.write(chunk)


def zip_cache_bytes() -> int:
    """The size limit of the extracted-zip cache: ``$TANS_ZIP_CACHE_BYTES``, else :data:`ZIP_CACHE_BYTES`.

    Raises
    ------
    ConfigError
        When the variable is not a non-negative whole number.
    """
    value = os.environ.get("TANS_ZIP_CACHE_BYTES", "").strip()
    if not value:
        return ZIP_CACHE_BYTES
    if not value.isdigit():
        raise ConfigError(f"TANS_ZIP_CACHE_BYTES must be a whole number of bytes, got {value!r}; e.g. 8589934592 for 8 GiB.")
    return int(value)


def _evict(keep: Path, limit: int) -> None:
    """Delete the least recently used extracted zips beside ``keep`` until the cache fits in ``limit``."""
    entries = [p for p in keep.parent.iterdir() if p.is_dir() and not p.name.startswith(".")]
    sizes = {p: sum(f.stat().st_size for f in p.rglob("*") if f.is_file() and not f.is_symlink()) for p in entries}
    total = sum(sizes.values())
    for old in sorted((p for p in entries if p != keep), key=lambda p: p.stat().st_mtime):
        if total <= limit:
            break
        aside = old.with_name(f".{old.name}.evicted-{uuid.uuid4().hex[:8]}")
        try:
            old.rename(aside)  # at once out of sight; deleted at leisure
        except OSError:
            continue  # evicted by another process meanwhile
        shutil.rmtree(aside, ignore_errors=True)
        total -= sizes[old]


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()
