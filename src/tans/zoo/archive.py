"""Move zoo entries between machines as one tar archive.

An archive holds exactly ``manifest.json`` (format, version, the zoo's working format, the entries,
their transfer records and the references of their tasks, as JSON) and one
``weights/<id>.safetensors`` per entry. Import trusts nothing in it: every member name and type is
checked before anything is read, every weights file must match the manifest's sha256 and parse as
safetensors, every record must be valid and belong to a model of the archive or of the zoo, and
only then are the entries, tasks and records added (append-only: ids already in the zoo are
skipped). Nothing is ever extracted to disk by the tar module, and nothing is unpickled. Archives
of version 1 (entries only) are still read. Archives are written to and read from a path or any
fsspec URL (:mod:`tans._remote`).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import tarfile
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tans import _remote
from tans._errors import TansError, ZooError
from tans._json import dumps
from tans.data.transforms import WorkingFormat
from tans.zoo.entry import ZooEntry
from tans.zoo.records import TaskRef, TransferRecord
from tans.zoo.store import DB_NAME, SCHEMA_VERSION, WEIGHTS_DIR, WEIGHTS_SUFFIX, Zoo, check_safetensors

__all__ = ["export_zoo", "import_zoo", "ImportReport", "ARCHIVE_FORMAT"]

ARCHIVE_FORMAT = "tans-zoo-archive"
ARCHIVE_VERSION = 2
# Versions import reads: 1 carried entries only, 2 adds transfer records and task references.
READABLE_VERSIONS = (1, 2)
MANIFEST = "manifest.json"
# A manifest is metadata only; anything larger is not one of ours.
MAX_MANIFEST_BYTES = 256 << 20
# A weights file holds at most 16 bytes per parameter the manifest declares (float64 weights plus
# as many buffer elements, e.g. BatchNorm statistics) and a header: anything larger is refused
# before it is read, and what is read is hashed as it streams in, a chunk at a time.
MAX_BYTES_PER_PARAM = 16
WEIGHTS_HEADER_BYTES = 1 << 20
_CHUNK = 1 << 20
_WEIGHTS_MEMBER = re.compile(
    rf"{WEIGHTS_DIR}/([A-Za-z0-9][A-Za-z0-9._-]{{0,127}}){re.escape(WEIGHTS_SUFFIX)}"
)


@dataclass(frozen=True)
class ImportReport:
    """What :func:`import_zoo` did.

    Parameters
    ----------
    added : tuple of str
        Ids added to the zoo.
    skipped : tuple of str
        Ids already in the zoo (left untouched).
    records_added : int
        Transfer records added (records already in the zoo are not counted).
    """

    added: tuple[str, ...] = ()
    skipped: tuple[str, ...] = ()
    records_added: int = 0

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form."""
        return {"added": list(self.added), "skipped": list(self.skipped), "records_added": self.records_added}

    def summary(self) -> str:
        """One line for people."""
        return (
            f"imported {len(self.added)} entries, skipped {len(self.skipped)} already present, "
            f"added {self.records_added} transfer records"
        )


@dataclass(frozen=True)
class _Manifest:
    """The validated content of ``manifest.json``."""

    entries: list[ZooEntry]
    working_format: WorkingFormat
    records: list[TransferRecord]
    tasks: list[TaskRef]


def export_zoo(zoo: Zoo, out_path: _remote.Location, *, ids: Iterable[str] | None = None) -> Path | str:
    """Write entries, their weights, their transfer records and their tasks into one tar archive.

    Parameters
    ----------
    zoo : Zoo
        The source zoo.
    out_path : str or Path
        The archive to write (conventionally ``*.tar``): a path, written to a temporary name first
        and moved into place when complete, or an fsspec URL (``s3://bucket/zoo.tar``), uploaded
        once complete.
    ids : iterable of str, optional
        The entries to export; all by default. Only the transfer records of these entries, and
        the tasks their entries and records refer to, go with them.

    Returns
    -------
    Path or str
        The archive's path, or its URL.

    Raises
    ------
    ZooError
        When an id is unknown, an entry's weights are missing or tampered, or the URL cannot be
        written (nothing is exported then).
    """
    _remote.resolve(out_path)  # an unreachable URL fails before any work
    entries = zoo.entries() if ids is None else [zoo.get(i) for i in dict.fromkeys(ids)]
    chosen = {e.id for e in entries}
    records = [r for r in zoo.transfers() if r.model_id in chosen]
    used = {e.task_fingerprint for e in entries} | {r.target_fingerprint for r in records}
    tasks = [t for t in zoo.tasks().values() if ids is None or t.fingerprint in used]
    manifest = {
        "format": ARCHIVE_FORMAT,
        "version": ARCHIVE_VERSION,
        "schema_version": SCHEMA_VERSION,
        "working_format": {"size": zoo.working_format.size, "channels": zoo.working_format.channels},
        "entries": [e.to_dict() for e in entries],
        "transfers": [r.to_dict() for r in records],
        "tasks": [t.to_dict() for t in tasks],
    }
    now = int(time.time())
    with _remote.new_file(out_path) as tmp, tarfile.open(tmp, "w", format=tarfile.PAX_FORMAT) as tar:
        _add_member(tar, MANIFEST, dumps(manifest, indent=1, digits=None).encode(), now)
        for entry in entries:
            data = zoo.read_weights(entry.id)  # refuses missing or tampered weights
            _add_member(tar, f"{WEIGHTS_DIR}/{entry.id}{WEIGHTS_SUFFIX}", data, now)
    return _remote.normalize(out_path)


def _add_member(tar: tarfile.TarFile, name: str, data: bytes, mtime: int) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.mtime = len(data), 0o644, mtime
    tar.addfile(info, io.BytesIO(data))


def _check_members(members: list[tarfile.TarInfo], archive: Path | str) -> dict[str, tarfile.TarInfo]:
    """Refuse the archive unless it holds only the manifest and weights files; return id -> member."""

    def refuse(member: tarfile.TarInfo, why: str) -> ZooError:
        return ZooError(
            f"refusing archive {archive}: member {member.name!r} {why}; a zoo archive holds only "
            f"{MANIFEST} and {WEIGHTS_DIR}/<id>{WEIGHTS_SUFFIX} files (make one with 'tans zoo export')."
        )

    weights: dict[str, tarfile.TarInfo] = {}
    seen: set[str] = set()
    for m in members:
        name = m.name[2:] if m.name.startswith("./") else m.name  # as written by `tar -C dir .`
        parts = name.split("/")
        if name.startswith("/") or re.match(r"[A-Za-z]:", name) or "\\" in name:
            raise refuse(m, "has an absolute or non-POSIX path")
        if ".." in parts:
            raise refuse(m, "points outside the archive ('..')")
        if m.issym() or m.islnk():
            raise refuse(m, f"is a link (to {m.linkname!r})")
        if m.isdir() and name.rstrip("/") in ("", ".", WEIGHTS_DIR):
            continue  # the directories of the allowed files carry nothing
        if not m.isfile():
            raise refuse(m, "is not a regular file")
        if name in seen:
            raise refuse(m, "appears twice")
        seen.add(name)
        if name == MANIFEST:
            continue
        match = _WEIGHTS_MEMBER.fullmatch(name)
        if match is None:
            raise refuse(m, "is not an allowed file (pickles and other formats are never imported)")
        weights[match.group(1)] = m
    if MANIFEST not in seen:
        raise ZooError(
            f"refusing archive {archive}: it has no {MANIFEST}; make zoo archives with 'tans zoo export'."
        )
    return weights


def _read_member(tar: tarfile.TarFile, member: tarfile.TarInfo) -> bytes:
    fh = tar.extractfile(member)  # a regular file (checked), read into memory, never extracted
    if fh is None:
        raise ZooError(f"could not read member {member.name!r} of the archive.")
    with fh:
        return fh.read()


def _read_manifest(tar: tarfile.TarFile, member: tarfile.TarInfo, archive: Path | str) -> _Manifest:
    if member.size > MAX_MANIFEST_BYTES:
        raise ZooError(
            f"refusing archive {archive}: {MANIFEST} is {member.size} bytes, too large for metadata."
        )
    try:
        manifest = json.loads(_read_member(tar, member))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ZooError(f"refusing archive {archive}: {MANIFEST} is not valid JSON ({exc}).") from None
    if not isinstance(manifest, dict) or manifest.get("format") != ARCHIVE_FORMAT:
        raise ZooError(
            f"refusing archive {archive}: expected a {MANIFEST} with format {ARCHIVE_FORMAT!r}, got "
            f"{manifest.get('format') if isinstance(manifest, dict) else type(manifest).__name__!r}."
        )
    if manifest.get("version") not in READABLE_VERSIONS or not isinstance(manifest.get("entries"), list):
        raise ZooError(
            f"refusing archive {archive}: expected archive version {' or '.join(map(str, READABLE_VERSIONS))} "
            f"with a list of entries, got version {manifest.get('version')!r}; export it again with this tans."
        )
    for key in ("transfers", "tasks"):
        if not isinstance(manifest.get(key, []), list):
            raise ZooError(
                f"refusing archive {archive}: expected {key!r} in {MANIFEST} as a list, got "
                f"{type(manifest[key]).__name__}; export it again with this tans."
            )
    try:
        entries = [ZooEntry.from_dict(e) for e in manifest["entries"]]
        records = [TransferRecord.from_dict(r) for r in manifest.get("transfers", [])]
        tasks = [TaskRef.from_dict(t) for t in manifest.get("tasks", [])]
    except (TypeError, ValueError) as exc:
        raise ZooError(f"refusing archive {archive}: a manifest entry, record or task is malformed ({exc}).") from None
    except TansError as exc:
        raise ZooError(f"refusing archive {archive}: {exc}") from None
    fmt = manifest.get("working_format", {"size": 32, "channels": 3})  # older archives: the 32x32 RGB default
    try:
        working_format = WorkingFormat(int(fmt["size"]), int(fmt["channels"]))
    except (TypeError, KeyError, ValueError):
        raise ZooError(
            f"refusing archive {archive}: expected a working_format with integer size and channels, got {fmt!r}."
        ) from None
    except TansError as exc:
        raise ZooError(f"refusing archive {archive}: {exc}") from None
    return _Manifest(entries, working_format, records, tasks)


def _open_tar(path: Path, archive: Path | str) -> tarfile.TarFile:
    try:
        return tarfile.open(path, "r:*")
    except tarfile.TarError:
        raise ZooError(f"expected a tar archive made by 'tans zoo export', got {archive}, which is not a tar file.") from None


def import_zoo(zoo: Zoo | str | os.PathLike[str], archive_path: _remote.Location) -> ImportReport:
    """Add the entries, transfer records and tasks of an archive made by :func:`export_zoo` to ``zoo``.

    The whole archive is validated before anything is added; any problem refuses all of it.

    Parameters
    ----------
    zoo : Zoo or path
        The destination zoo; a path without one gets a new zoo, created only once the archive
        has passed every check (a refused archive leaves no empty zoo behind).
    archive_path : str or Path
        A tar archive (plain or compressed): a path, or an fsspec URL (downloaded to a temporary
        file that is removed afterwards).

    Returns
    -------
    ImportReport
        Which ids were added and which were already present, and how many records were new.

    Raises
    ------
    ZooError
        When the archive is not a tar file; holds a member other than ``manifest.json`` and
        ``weights/<id>.safetensors`` regular files (absolute paths, ``..``, links, devices,
        pickles...); its manifest and weights files do not correspond; a weights file does not
        match its sha256 or does not parse as safetensors; a transfer record or task is malformed
        (accuracies must be finite fractions) or a record's model is neither in the archive nor in
        ``zoo``; an id in it is already stored in ``zoo`` for a different build unit or fine-tune;
        ``zoo`` holds networks of another working format; or the URL cannot be read.
    """
    archive = _remote.normalize(archive_path)
    new_path = None
    if not isinstance(zoo, Zoo):
        new_path = Path(zoo).expanduser()
        zoo = Zoo.open(new_path) if (new_path / DB_NAME).exists() else None
    if not _remote.is_file(archive):
        raise ZooError(f"expected a zoo archive file, got {archive} which does not exist.")
    with _remote.local_copy(archive) as local, _open_tar(local, archive) as tar:  # a URL's copy is removed after
        try:
            members = tar.getmembers()
        except tarfile.TarError as exc:
            raise ZooError(f"refusing archive {archive}: it is damaged ({exc}).") from None
        weights = _check_members(members, archive)
        manifest_member = next(m for m in members if m.isfile() and m.name.removeprefix("./") == MANIFEST)
        manifest = _read_manifest(tar, manifest_member, archive)
        entries, working_format = manifest.entries, manifest.working_format

        ids = [e.id for e in entries]
        dupes = sorted({i for i in ids if ids.count(i) > 1})
        no_weights = sorted(set(ids) - set(weights))
        no_entry = sorted(set(weights) - set(ids))
        if dupes or no_weights or no_entry:
            raise ZooError(
                f"refusing archive {archive}: its manifest and weights do not correspond (duplicate "
                f"ids {dupes}, entries without weights {no_weights}, weights without entry "
                f"{no_entry}); export it again."
            )

        _check_records(zoo, manifest.records, set(ids), archive)

        # first pass: check everything, so a bad archive adds nothing
        skipped = []
        for entry in entries:
            _read_weights(tar, weights[entry.id], entry, archive)
            if zoo is not None and entry.id in zoo:
                zoo._check_same_unit(zoo.get(entry.id), entry)
                skipped.append(entry.id)
        zoo = zoo if zoo is not None else Zoo.create(new_path)
        zoo.record_working_format(working_format)  # refuses networks of another image format
        # second pass: add, re-checking the bytes actually stored
        added = []
        for entry in entries:
            if entry.id in skipped:
                continue
            if entry.id in zoo:  # added by another writer meanwhile
                skipped.append(entry.id)
                continue
            zoo._add_serialized(entry, _read_weights(tar, weights[entry.id], entry, archive))
            added.append(entry.id)
    zoo._register_tasks(manifest.tasks)  # the zoo's own reference of a task stays
    records_added = zoo.add_transfers(manifest.records)  # one transaction; re-imports add nothing
    return ImportReport(added=tuple(added), skipped=tuple(skipped), records_added=records_added)


def _check_records(zoo: Zoo | None, records: list[TransferRecord], archive_ids: set[str], archive: Path | str) -> None:
    """Refuse duplicate records, records of unknown models and ids stored for another fine-tune."""
    seen: set[str] = set()
    for record in records:
        if record.id in seen:
            raise ZooError(f"refusing archive {archive}: transfer record {record.id} appears twice; export it again.")
        seen.add(record.id)
        if record.model_id not in archive_ids and (zoo is None or record.model_id not in zoo):
            raise ZooError(
                f"refusing archive {archive}: transfer record {record.id} is of model {record.model_id!r}, which "
                "is neither in the archive nor in the zoo; export the model together with its records."
            )
    stored = zoo.transfer_ids() if zoo is not None else set()
    for record in records:
        if record.id in stored:
            existing = zoo._get_transfer(record.id)
            if existing is not None and not existing.same_run(record):
                raise ZooError(
                    f"refusing archive {archive}: transfer record id {record.id} is already stored in the zoo "
                    "for another fine-tune; the archive was assembled wrongly."
                )


def _read_weights(tar: tarfile.TarFile, member: tarfile.TarInfo, entry: ZooEntry, archive: Path | str) -> bytes:
    """The bytes of ``entry``'s weights member, after checking its size, sha256 and safetensors format.

    The size is checked against :data:`MAX_BYTES_PER_PARAM` before anything is read; the sha256 is
    computed while the member streams in.
    """
    cap = MAX_BYTES_PER_PARAM * max(int(entry.params), 0) + WEIGHTS_HEADER_BYTES
    if member.size > cap:
        raise ZooError(
            f"refusing archive {archive}: weights of entry {entry.id} are {member.size:,} bytes, more than "
            f"its {entry.params:,} parameters can take ({cap:,} bytes at most); the archive was modified or damaged."
        )
    fh = tar.extractfile(member)  # a regular file (checked), read in chunks, never extracted
    if fh is None:
        raise ZooError(f"could not read member {member.name!r} of the archive.")
    sha, buffer = hashlib.sha256(), bytearray()
    with fh:
        for chunk in iter(lambda: fh.read(_CHUNK), b""):
            sha.update(chunk)
            buffer += chunk
    digest = sha.hexdigest()
    if digest != entry.sha256:
        raise ZooError(
            f"refusing archive {archive}: weights of entry {entry.id} have sha256 {digest[:12]}..., "
            f"the manifest says {entry.sha256[:12] or '(none)'}...; the archive was modified or damaged."
        )
    data = bytes(buffer)
    try:
        meta = check_safetensors(data)
    except TansError as exc:
        raise ZooError(f"refusing archive {archive}: weights of entry {entry.id}: {exc}") from None
    if meta.get("tans_id", entry.id) != entry.id:
        raise ZooError(
            f"refusing archive {archive}: weights file of entry {entry.id} says it belongs to "
            f"{meta['tans_id']!r}; the archive was assembled wrongly."
        )
    return data
