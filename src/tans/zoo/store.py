"""The zoo directory: SQLite metadata plus one safetensors file per entry.

Layout::

    <zoo>/zoo.sqlite                    metadata (schema version in table zoo_meta, WAL journal)
    <zoo>/weights/<id>.safetensors      weights, tensor names as in the model's state dict

The database holds the entries, the transfer records (fine-tunes of entries on target tasks, see
:mod:`tans.zoo.records`) and a reference to every task the zoo knows (how to load it again). A
zoo of schema version 1 (no records, no tasks) is upgraded in place when opened.

Crash safety. :meth:`Zoo.add` writes the weights to a temporary file in ``weights/``, fsyncs it,
then, holding SQLite's write lock, moves it into place with ``os.replace`` and inserts the row in
the same transaction. A process killed at any moment leaves either a complete entry or no row
(plus at worst a stray temporary file or a row-less weights file, which readers ignore, a re-run
overwrites, :meth:`Zoo.verify` reports and :meth:`Zoo.remove_orphans` deletes).

Append-only. Adding an id that is already stored is a no-op that returns the stored entry, even
when accuracy or latency differ (a re-run re-measures them; the first result stays). If the
stored entry describes a different build unit (other arch, task, recipe or seed) the add is
refused with a :class:`~tans.TansError`, since that means two different networks share an id.
Transfer records follow the same rule (:meth:`Zoo.add_transfer`), and each batch of them is
written in one transaction.

Concurrency. Writers serialise on SQLite's lock (``BEGIN IMMEDIATE`` with a busy timeout, so a
second builder waits instead of failing); readers never block in WAL mode. WAL needs a local
file system: on shared network storage let one process (the build driver) do the writing.
Builders of one zoo split the work through claims (:meth:`Zoo.claim`, table ``claims``: unit id,
owner, lease expiry), see :mod:`tans.zoo.claims`. The table is created by the first claim, not by
a schema upgrade: it is advisory, and a tans that does not know it still reads and writes the zoo.

torch is imported only when tensors are written or read, so listing and verifying stay fast.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import sqlite3
import struct
import time
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from tans import _atomic
from tans._errors import TansError, ZooError, did_you_mean
from tans.data.transforms import WorkingFormat
from tans.paths import default_zoo_dir
from tans.zoo.entry import ID_PATTERN, ZooEntry
from tans.zoo.records import TaskRef, TransferRecord

if TYPE_CHECKING:
    from torch import nn

    from tans.data.dataset import Dataset

__all__ = ["Zoo", "open_zoo", "VerifyReport", "SCHEMA_VERSION", "DB_NAME", "WEIGHTS_DIR"]

SCHEMA_VERSION = 2
DB_NAME = "zoo.sqlite"
WEIGHTS_DIR = "weights"
WEIGHTS_SUFFIX = ".safetensors"
ZOO_FORMAT = "tans-zoo"
# Writers wait this long for the lock before giving up (a long build may hold many writers).
BUSY_TIMEOUT_S = 120.0

_SCHEMA_V1 = """
CREATE TABLE IF NOT EXISTS zoo_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS entries (
    id TEXT PRIMARY KEY,
    arch TEXT NOT NULL,
    task TEXT NOT NULL,
    task_fingerprint TEXT NOT NULL,
    task_family TEXT NOT NULL,
    num_classes INTEGER NOT NULL,
    recipe TEXT NOT NULL,
    seed INTEGER NOT NULL,
    val_acc REAL NOT NULL,
    test_acc REAL NOT NULL,
    chance_acc REAL NOT NULL,
    flagged INTEGER NOT NULL,
    params INTEGER NOT NULL,
    flops INTEGER NOT NULL,
    latency_ms REAL NOT NULL,
    latency_threads INTEGER NOT NULL,
    machine TEXT NOT NULL,
    embedding BLOB NOT NULL,
    embedding_dim INTEGER NOT NULL,
    weights_file TEXT NOT NULL,
    sha256 TEXT NOT NULL,
    created TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS entries_task ON entries(task);
CREATE INDEX IF NOT EXISTS entries_family ON entries(task_family);
CREATE INDEX IF NOT EXISTS entries_params ON entries(params);
"""

# Version 2: transfer records and task references.
_SCHEMA_V2 = """
CREATE TABLE IF NOT EXISTS transfers (
    id TEXT PRIMARY KEY,
    model_id TEXT NOT NULL,
    target TEXT NOT NULL,
    target_fingerprint TEXT NOT NULL,
    target_family TEXT NOT NULL,
    num_classes INTEGER NOT NULL,
    recipe TEXT NOT NULL,
    seed INTEGER NOT NULL,
    val_acc REAL NOT NULL,
    test_acc REAL NOT NULL,
    chance_acc REAL NOT NULL,
    curve TEXT NOT NULL,
    train_images INTEGER NOT NULL,
    seconds REAL NOT NULL,
    origin TEXT NOT NULL,
    created TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS transfers_model ON transfers(model_id);
CREATE INDEX IF NOT EXISTS transfers_target ON transfers(target);
CREATE TABLE IF NOT EXISTS tasks (
    fingerprint TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    family TEXT NOT NULL,
    source TEXT NOT NULL,
    num_classes INTEGER NOT NULL
);
"""

_SCHEMA = _SCHEMA_V1 + _SCHEMA_V2

# Leases on build and transfer units (see Zoo.claim); expires is a Unix time.
_CLAIMS_TABLE = "CREATE TABLE IF NOT EXISTS claims (unit TEXT PRIMARY KEY, owner TEXT NOT NULL, expires REAL NOT NULL)"
# What upgrades a zoo of schema version v to v + 1.
_MIGRATIONS = {1: _SCHEMA_V2}

# Column order of the entries table (the embedding is stored as blob + dim).
_COLUMNS = (
    "id", "arch", "task", "task_fingerprint", "task_family", "num_classes", "recipe", "seed",
    "val_acc", "test_acc", "chance_acc", "flagged", "params", "flops", "latency_ms",
    "latency_threads", "machine", "embedding", "embedding_dim", "weights_file", "sha256", "created",
)  # fmt: skip
# Column order of the transfers table (the curve is stored as JSON text).
_TRANSFER_COLUMNS = (
    "id", "model_id", "target", "target_fingerprint", "target_family", "num_classes", "recipe", "seed",
    "val_acc", "test_acc", "chance_acc", "curve", "train_images", "seconds", "origin", "created",
)  # fmt: skip
_TASK_COLUMNS = ("fingerprint", "name", "family", "source", "num_classes")


@dataclass(frozen=True)
class VerifyReport:
    """What :meth:`Zoo.verify` found.

    Parameters
    ----------
    checked : int
        Number of entries whose weights were checked.
    missing : tuple of str
        Ids whose weights file is gone.
    tampered : tuple of str
        Ids whose weights file no longer matches its recorded sha256.
    orphans : tuple of str
        Files in ``weights/`` with no entry: temporary files of interrupted writes and weights
        written by a process killed before its row was committed. Harmless; see
        :meth:`Zoo.remove_orphans`.
    database_ok : bool
        SQLite's ``quick_check`` passed.
    """

    checked: int
    missing: tuple[str, ...] = ()
    tampered: tuple[str, ...] = ()
    orphans: tuple[str, ...] = ()
    database_ok: bool = True

    @property
    def ok(self) -> bool:
        """No missing or tampered weights and a sound database (orphans are harmless)."""
        return self.database_ok and not self.missing and not self.tampered

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form, with ``ok``."""
        return {
            "ok": self.ok,
            "checked": self.checked,
            "missing": list(self.missing),
            "tampered": list(self.tampered),
            "orphans": list(self.orphans),
            "database_ok": self.database_ok,
        }

    def summary(self) -> str:
        """One line for people."""
        parts = [f"{self.checked} entries checked"]
        if self.missing:
            parts.append(f"{len(self.missing)} missing weights ({', '.join(self.missing[:5])})")
        if self.tampered:
            parts.append(f"{len(self.tampered)} tampered weights ({', '.join(self.tampered[:5])})")
        if self.orphans:
            parts.append(f"{len(self.orphans)} orphan files")
        if not self.database_ok:
            parts.append("database integrity check failed")
        return ("ok: " if self.ok else "PROBLEMS: ") + "; ".join(parts)


@dataclass(frozen=True)
class _Filters:
    """SQL for the constraint filters shared by :meth:`Zoo.entries` and :meth:`Zoo.embeddings`."""

    where: str = ""
    args: tuple[Any, ...] = field(default=())


def _utc_now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def read_safetensors_header(data: bytes) -> dict[str, Any]:
    """Parse the JSON header of a safetensors buffer (no tensor is decoded).

    Parameters
    ----------
    data : bytes
        The whole file.

    Returns
    -------
    dict
        The header: tensor name -> ``{dtype, shape, data_offsets}``, plus ``__metadata__``.

    Raises
    ------
    TansError
        When the buffer does not start with a valid safetensors header.
    """
    if len(data) < 8:
        raise TansError(f"expected a safetensors file, got {len(data)} bytes (too short).")
    (size,) = struct.unpack("<Q", data[:8])
    if size > len(data) - 8:
        raise TansError("expected a safetensors file, got a header length beyond the end of the file.")
    try:
        header = json.loads(data[8 : 8 + size])
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise TansError("expected a safetensors file, got an unreadable header.") from None
    if not isinstance(header, dict):
        raise TansError("expected a safetensors file, got a header that is not a JSON object.")
    return header


def check_safetensors(data: bytes) -> dict[str, str]:
    """Fully parse a safetensors buffer without unpickling anything; return its metadata.

    Raises
    ------
    TansError
        When the buffer is not a complete, consistent safetensors file.
    """
    import safetensors

    header = read_safetensors_header(data)
    try:
        safetensors.deserialize(bytes(data))  # Rust parser: checks dtypes, shapes, offsets, coverage
    except Exception as exc:  # SafetensorError and friends
        raise TansError(f"expected a safetensors file, got one that does not parse: {exc}") from None
    meta = header.get("__metadata__") or {}
    return {str(k): str(v) for k, v in meta.items()}


def serialize_safetensors(state_dict: Mapping[str, Any], metadata: dict[str, str]) -> bytes:
    """State dict -> safetensors bytes, canonically: equal tensors and metadata give equal bytes.

    safetensors orders the data by dtype and name, but writes the metadata in an order that
    changes from process to process; the header is rewritten with sorted keys and no spaces, so
    a checksum identifies the weights. numpy-only dicts skip importing torch.
    """
    if not isinstance(state_dict, Mapping) or not state_dict:
        raise TansError(
            f"expected a non-empty state dict (name -> tensor), got {type(state_dict).__name__}"
            f"{' (empty)' if isinstance(state_dict, Mapping) else ''}; pass model.state_dict()."
        )
    bad = [k for k, v in state_dict.items() if not isinstance(k, str)]
    if bad:
        raise TansError(f"expected string tensor names in the state dict, got {bad[:3]}.")
    if all(isinstance(v, np.ndarray) for v in state_dict.values()):
        from safetensors.numpy import save as save_numpy

        # np.require, not ascontiguousarray: the latter turns 0-d tensors (BatchNorm counters) into 1-d.
        arrays = {k: np.require(v, requirements="C") for k, v in state_dict.items()}
        return _canonical_header(save_numpy(arrays, metadata=metadata))

    import torch
    from safetensors.torch import save as save_torch

    tensors = {}
    for k, v in state_dict.items():
        if isinstance(v, np.ndarray):
            v = torch.from_numpy(np.require(v, requirements="C"))
        if not isinstance(v, torch.Tensor):
            raise TansError(
                f"expected tensors in the state dict, got {type(v).__name__} for {k!r}; "
                "store only model.state_dict() values."
            )
        # clone: safetensors refuses tensors that share storage (tied weights)
        tensors[k] = v.detach().to("cpu").contiguous().clone()
    return _canonical_header(save_torch(tensors, metadata=metadata))


def _canonical_header(data: bytes) -> bytes:
    """The same safetensors file with its JSON header in sorted-key, spaceless form (padded to 8 bytes)."""
    (size,) = struct.unpack("<Q", data[:8])
    header = json.dumps(json.loads(data[8 : 8 + size]), sort_keys=True, separators=(",", ":")).encode()
    header += b" " * (-len(header) % 8)  # the data stays 8-byte aligned, as safetensors writes it
    return struct.pack("<Q", len(header)) + header + data[8 + size :]


def claim_owner() -> str:
    """A new owner name for claims: ``host/pid/nonce`` (the nonce tells builders of one process apart)."""
    return f"{socket.gethostname()}/{os.getpid()}/{os.urandom(4).hex()}"


def _owner_alive(owner: str) -> bool:
    """False when ``owner`` ran on this host in a process that is gone; True when alive or unknown."""
    host, _, rest = owner.partition("/")
    pid = rest.partition("/")[0]
    if host != socket.gethostname() or not pid.isdigit():
        return True  # another machine: only the lease's expiry tells
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    return True


@contextmanager
def _write_transaction(conn: sqlite3.Connection) -> Iterator[None]:
    """``BEGIN IMMEDIATE`` ... ``COMMIT``, rolled back on any error (writers serialise on the lock)."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise


class Zoo:
    """A model zoo directory: append-only, crash-safe, safe for concurrent writers.

    Parameters
    ----------
    path : str or Path
        The zoo directory. ``Zoo(path)`` opens an existing zoo, like :meth:`open`.
    create : bool, default False
        Create the zoo when ``path`` holds none (an existing zoo is opened as is).

    Raises
    ------
    TansError
        When ``path`` is not a zoo (and ``create`` is false), or its schema version differs from
        the one this tans reads.

    Notes
    -----
    A ``Zoo`` may be pickled (e.g. to send to a worker process): only the path travels and the
    worker opens its own connection.
    """

    def __init__(self, path: str | os.PathLike[str], *, create: bool = False) -> None:
        self.path = Path(path).expanduser()
        self._conn: sqlite3.Connection | None = None
        self._pid = -1
        self._connect(create=create)

    # -- opening -------------------------------------------------------------------------------

    @classmethod
    def create(cls, path: str | os.PathLike[str], *, exist_ok: bool = True) -> Zoo:
        """Create a zoo at ``path`` (or open the one already there when ``exist_ok``).

        Two builders may call this at the same moment; both end up with the same zoo.

        Raises
        ------
        TansError
            When ``exist_ok`` is false and a zoo exists, or ``path`` is a file.
        """
        path = Path(path).expanduser()
        if not exist_ok and (path / DB_NAME).exists():
            raise TansError(f"a zoo already exists at {path}; open it with Zoo.open or pick a new directory.")
        return cls(path, create=True)

    @classmethod
    def open(cls, path: str | os.PathLike[str]) -> Zoo:
        """Open the existing zoo at ``path``.

        Raises
        ------
        TansError
            When ``path`` holds no zoo or one of another schema version.
        """
        return cls(path)

    @property
    def db_path(self) -> Path:
        return self.path / DB_NAME

    @property
    def weights_dir(self) -> Path:
        return self.path / WEIGHTS_DIR

    def weights_path(self, entry_id: str) -> Path:
        """Where the weights of ``entry_id`` live."""
        return self.weights_dir / f"{entry_id}{WEIGHTS_SUFFIX}"

    def _connect(self, *, create: bool = False) -> sqlite3.Connection:
        if self._conn is not None and self._pid == os.getpid():
            return self._conn
        self._conn = None  # a connection inherited over fork must not be used
        if self.path.exists() and not self.path.is_dir():
            raise TansError(f"expected a zoo directory, got the file {self.path}; pass its parent directory.")
        if not self.db_path.exists():
            if not create:
                hint = "it holds no zoo.sqlite" if self.path.is_dir() else "it does not exist"
                raise TansError(
                    f"expected a tans zoo at {self.path}, but {hint}; build one with "
                    "'tans zoo build' or Zoo.create(path)."
                )
            self.weights_dir.mkdir(parents=True, exist_ok=True)
        conn = None
        try:
            # mode=rw when opening: never conjure an empty database out of a wrong path.
            # isolation_level=None: autocommit, so reads hold no transaction; writes BEGIN themselves
            uri = self.db_path.resolve().as_uri() + ("?mode=rwc" if create else "?mode=rw")
            conn = sqlite3.connect(uri, uri=True, timeout=BUSY_TIMEOUT_S, isolation_level=None)
            conn.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}")
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("PRAGMA synchronous = FULL")
            if create:
                self._create_schema(conn)
            version = self._read_version(conn)
            if version < SCHEMA_VERSION and version in _MIGRATIONS:
                version = self._migrate(conn)
        except sqlite3.DatabaseError as exc:
            if conn is not None:
                conn.close()
            raise TansError(
                f"expected a tans zoo database at {self.db_path}, got an unreadable file ({exc}); "
                "restore it from a backup or an export."
            ) from None
        except BaseException:
            if conn is not None:
                conn.close()
            raise
        if version != SCHEMA_VERSION:
            conn.close()
            raise TansError(
                f"the zoo at {self.path} has schema version {version}, this tans reads version "
                f"{SCHEMA_VERSION}; use a tans release of the zoo's version, or export it there "
                "and import it into a new zoo."
            )
        self.weights_dir.mkdir(exist_ok=True)
        self._conn, self._pid = conn, os.getpid()
        return conn

    @staticmethod
    def _create_schema(conn: sqlite3.Connection) -> None:
        with _write_transaction(conn):
            for statement in _SCHEMA.split(";"):
                if statement.strip():
                    conn.execute(statement)
            # OR IGNORE: a second builder creating the same zoo at once keeps the first's values
            meta = {"format": ZOO_FORMAT, "schema_version": str(SCHEMA_VERSION), "created": _utc_now()}
            conn.executemany("INSERT OR IGNORE INTO zoo_meta VALUES (?, ?)", meta.items())

    def _migrate(self, conn: sqlite3.Connection) -> int:
        """Upgrade an older schema in place, in one write transaction; return the new version.

        A second process opening the zoo at the same moment waits for the lock, then finds the
        upgrade done (the version is read again under the lock).
        """
        try:
            with _write_transaction(conn):
                version = self._read_version(conn)
                while version < SCHEMA_VERSION and version in _MIGRATIONS:
                    for statement in _MIGRATIONS[version].split(";"):
                        if statement.strip():
                            conn.execute(statement)
                    version += 1
                    conn.execute("UPDATE zoo_meta SET value = ? WHERE key = 'schema_version'", (str(version),))
        except sqlite3.OperationalError as exc:
            raise TansError(
                f"the zoo at {self.path} has an older schema and must be upgraded to version "
                f"{SCHEMA_VERSION} in place, which failed ({exc}); open it once with write access "
                "to zoo.sqlite and its directory."
            ) from None
        return version

    def _read_version(self, conn: sqlite3.Connection) -> int:
        try:
            rows = dict(conn.execute("SELECT key, value FROM zoo_meta").fetchall())
        except sqlite3.OperationalError:  # no such table
            rows = {}
        if rows.get("format") != ZOO_FORMAT or "schema_version" not in rows:
            raise TansError(
                f"expected a tans zoo database at {self.db_path}, got an SQLite file without "
                "tans metadata; point to a zoo directory made by 'tans zoo build' (if a build was "
                "killed while creating this zoo, run it again)."
            )
        try:
            return int(rows["schema_version"])
        except ValueError:
            raise TansError(
                f"the zoo at {self.path} has an unreadable schema version {rows['schema_version']!r}; "
                "restore zoo.sqlite from a backup or an export."
            ) from None

    def close(self) -> None:
        """Close the database connection (it reopens on next use)."""
        if self._conn is not None and self._pid == os.getpid():
            self._conn.close()
        self._conn = None

    def __enter__(self) -> Zoo:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __getstate__(self) -> dict[str, Any]:
        return {"path": self.path}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.path, self._conn, self._pid = state["path"], None, -1

    def __repr__(self) -> str:
        return f"Zoo({str(self.path)!r}, entries={len(self)})"

    # -- working format --------------------------------------------------------------------------

    @property
    def working_format(self) -> WorkingFormat:
        """Image size and channels every network of this zoo was trained on (32x32 RGB if unrecorded)."""
        rows = dict(self._connect().execute("SELECT key, value FROM zoo_meta").fetchall())
        if "image_size" not in rows:
            return WorkingFormat()  # zoos written before the format was recorded were all 32x32 RGB
        try:
            return WorkingFormat(int(rows["image_size"]), int(rows["channels"]))
        except (KeyError, ValueError):
            raise TansError(
                f"the zoo at {self.path} has an unreadable working format in zoo_meta "
                f"(image_size={rows.get('image_size')!r}, channels={rows.get('channels')!r}); restore "
                "zoo.sqlite from a backup or an export."
            ) from None

    def record_working_format(self, fmt: WorkingFormat) -> None:
        """Record the zoo's working format on first use; refuse a different one later.

        Raises
        ------
        TansError
            If the zoo already holds networks of another working format.
        """
        conn = self._connect()
        with _write_transaction(conn):  # OR IGNORE: the first format recorded stays
            values = {"image_size": str(fmt.size), "channels": str(fmt.channels)}
            conn.executemany("INSERT OR IGNORE INTO zoo_meta VALUES (?, ?)", values.items())
        stored = self.working_format
        if stored != fmt:
            raise TansError(
                f"the zoo at {self.path} holds networks of {stored.size}x{stored.size}x{stored.channels} images, "
                f"not {fmt.size}x{fmt.size}x{fmt.channels}; add only networks of its format (image_size="
                f"{stored.size}, channels={stored.channels}) or use a new zoo directory."
            )

    # -- writing -------------------------------------------------------------------------------

    def add(self, entry: ZooEntry, state_dict: Mapping[str, Any]) -> ZooEntry:
        """Store a network: weights first, then its metadata row.

        Parameters
        ----------
        entry : ZooEntry
            The metadata; ``weights_file`` and ``sha256`` are filled in here (values passed in
            are replaced), ``created`` too when empty.
        state_dict : mapping of str to torch.Tensor or np.ndarray
            The weights, e.g. ``model.state_dict()``.

        Returns
        -------
        ZooEntry
            The stored entry. When ``entry.id`` is already stored, nothing is written and the
            stored entry is returned (append-only: a re-run never replaces a result).

        Raises
        ------
        TansError
            When the id is stored for a different build unit, or the state dict holds no tensors.
        """
        if not isinstance(entry, ZooEntry):
            raise TansError(f"expected a ZooEntry, got {type(entry).__name__}.")
        existing = self._get_row(entry.id)
        if existing is not None:  # cheap path for a resumed build: skip serialising
            return self._check_same_unit(existing, entry)
        data = serialize_safetensors(state_dict, {"tans_id": entry.id, "arch": entry.arch, "format": "pt"})
        return self._add_serialized(entry, data)

    def _add_serialized(self, entry: ZooEntry, data: bytes) -> ZooEntry:
        """Store already-serialised safetensors bytes (used by :meth:`add` and import)."""
        digest = hashlib.sha256(data).hexdigest()
        stored = replace(
            entry,
            weights_file=f"{WEIGHTS_DIR}/{entry.id}{WEIGHTS_SUFFIX}",
            sha256=digest,
            created=entry.created or _utc_now(),
        )
        conn = self._connect()
        self.weights_dir.mkdir(exist_ok=True)
        tmp = _atomic.temp_beside(self.weights_path(entry.id))
        try:
            tmp.write_bytes(data)  # slow part outside the lock
            conn.execute("BEGIN IMMEDIATE")  # waits (busy timeout) for other writers
            try:
                existing = self._get_row(entry.id)
                if existing is not None:  # another writer stored it meanwhile
                    conn.execute("ROLLBACK")
                    return self._check_same_unit(existing, entry)
                # under the write lock, so no other writer can replace this file before we commit
                _atomic.replace(tmp, self.weights_path(entry.id))
                conn.execute(
                    f"INSERT INTO entries ({', '.join(_COLUMNS)}) VALUES ({', '.join('?' * len(_COLUMNS))})",
                    self._to_row(stored),
                )
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
        finally:
            tmp.unlink(missing_ok=True)
        return stored

    @staticmethod
    def _check_same_unit(existing: ZooEntry, new: ZooEntry) -> ZooEntry:
        if not existing.same_unit(new):
            raise TansError(
                f"entry id {new.id} is already stored for a different build unit (arch "
                f"{existing.arch}, task {existing.task}, seed {existing.seed}); give the new "
                "entry its own id, e.g. unit_key(arch, task_fingerprint, recipe, seed)."
            )
        return existing

    # -- rows <-> entries ----------------------------------------------------------------------

    @staticmethod
    def _to_row(entry: ZooEntry) -> tuple[Any, ...]:
        values = {name: getattr(entry, name) for name in _COLUMNS if hasattr(entry, name)}
        values["flagged"] = int(entry.flagged)
        values["embedding"] = entry.embedding.astype("<f4").tobytes()
        values["embedding_dim"] = int(entry.embedding.shape[0])
        return tuple(values[name] for name in _COLUMNS)

    def _from_row(self, row: tuple[Any, ...]) -> ZooEntry:
        values = dict(zip(_COLUMNS, row))
        blob, dim = values.pop("embedding"), values.pop("embedding_dim")
        values.pop("flagged")
        if len(blob) != 4 * dim:
            raise TansError(
                f"entry {values['id']}: the stored embedding has {len(blob)} bytes, expected "
                f"{4 * dim}; the database is damaged, restore it from a backup or an export."
            )
        values["embedding"] = np.frombuffer(blob, dtype="<f4").astype(np.float32)
        return ZooEntry(**values)

    def _row_by_id(self, table: str, columns: tuple[str, ...], row_id: str) -> tuple[Any, ...] | None:
        sql = f"SELECT {', '.join(columns)} FROM {table} WHERE id = ?"
        return self._connect().execute(sql, (row_id,)).fetchone()

    def _get_row(self, entry_id: str) -> ZooEntry | None:
        row = self._row_by_id("entries", _COLUMNS, entry_id)
        return None if row is None else self._from_row(row)

    # -- reading -------------------------------------------------------------------------------

    def __len__(self) -> int:
        return self._connect().execute("SELECT COUNT(*) FROM entries").fetchone()[0]

    def __contains__(self, entry_id: object) -> bool:
        if not isinstance(entry_id, str):
            return False
        row = self._connect().execute("SELECT 1 FROM entries WHERE id = ?", (entry_id,)).fetchone()
        return row is not None

    def __iter__(self) -> Iterator[ZooEntry]:
        return iter(self.entries())

    def ids(self) -> list[str]:
        """All entry ids, in insertion order."""
        return [r[0] for r in self._connect().execute("SELECT id FROM entries ORDER BY rowid")]

    def get(self, entry_id: str) -> ZooEntry:
        """The entry with id ``entry_id``.

        Raises
        ------
        TansError
            When no entry has that id (with close ids suggested).
        """
        entry = self._get_row(entry_id)
        if entry is None:
            raise TansError(
                f"no zoo entry with id {entry_id!r} in {self.path} ({len(self)} entries); "
                f"list them with 'tans zoo list'.{did_you_mean(entry_id, self.ids())}"
            )
        return entry

    @staticmethod
    def _filters(*, task: str | None = None, family: str | None = None, max_params: int | None = None,
                 max_flops: int | None = None, max_latency_ms: float | None = None,
                 include_flagged: bool = True) -> _Filters:
        """SQL for the keyword constraints of :meth:`entries`, which :meth:`embeddings` takes too."""
        clauses, args = [], []
        for column, op, value in (
            ("task", "=", task),
            ("task_family", "=", family),
            ("params", "<=", max_params),
            ("flops", "<=", max_flops),
            ("latency_ms", "<=", max_latency_ms),
        ):
            if value is not None:
                clauses.append(f"{column} {op} ?")
                args.append(value)
        if not include_flagged:
            clauses.append("flagged = 0")
        return _Filters(" WHERE " + " AND ".join(clauses) if clauses else "", tuple(args))

    def entries(
        self,
        *,
        task: str | None = None,
        family: str | None = None,
        max_params: int | None = None,
        max_flops: int | None = None,
        max_latency_ms: float | None = None,
        include_flagged: bool = True,
    ) -> list[ZooEntry]:
        """Entries that meet every given constraint, in insertion order (filtered in SQL).

        Parameters
        ----------
        task : str, optional
            Only entries trained on the task of this name.
        family : str, optional
            Only entries whose task belongs to this family.
        max_params, max_flops : int, optional
            Upper bounds (inclusive) on parameters and FLOPs.
        max_latency_ms : float, optional
            Upper bound (inclusive) on measured latency.
        include_flagged : bool, default True
            Keep entries flagged as barely above chance.

        Returns
        -------
        list of ZooEntry
        """
        f = self._filters(task=task, family=family, max_params=max_params, max_flops=max_flops,
                          max_latency_ms=max_latency_ms, include_flagged=include_flagged)
        rows = self._connect().execute(
            f"SELECT {', '.join(_COLUMNS)} FROM entries{f.where} ORDER BY rowid", f.args
        ).fetchall()
        return [self._from_row(r) for r in rows]

    def embeddings(self, **constraints: Any) -> tuple[list[str], np.ndarray]:
        """Functional embeddings of the entries that meet the constraints.

        Parameters
        ----------
        **constraints
            The keyword constraints of :meth:`entries` (``task``, ``family``, ``max_params``,
            ``max_flops``, ``max_latency_ms``, ``include_flagged``).

        Returns
        -------
        ids : list of str
            Entry ids, in insertion order.
        matrix : np.ndarray
            ``(n, dim)`` float32, row ``i`` belongs to ``ids[i]``; ``(0, 0)`` when none match.

        Raises
        ------
        TansError
            When the selected entries have embeddings of different lengths.
        """
        f = self._filters(**constraints)
        rows = self._connect().execute(
            f"SELECT id, embedding, embedding_dim FROM entries{f.where} ORDER BY rowid", f.args
        ).fetchall()
        if not rows:
            return [], np.zeros((0, 0), dtype=np.float32)
        dims = {r[2] for r in rows}
        if len(dims) != 1:
            raise TansError(
                f"expected functional embeddings of one length, got lengths {sorted(dims)}; "
                "filter the zoo to entries built with the same probe (e.g. by family)."
            )
        matrix = np.frombuffer(b"".join(r[1] for r in rows), dtype="<f4").reshape(len(rows), dims.pop())
        return [r[0] for r in rows], matrix.astype(np.float32)

    def read_weights(self, entry_id: str) -> bytes:
        """The raw safetensors bytes of an entry, checked against its sha256.

        Raises
        ------
        TansError
            When the id is unknown, or the weights file is missing or was modified.
        """
        entry = self.get(entry_id)
        path = self.weights_path(entry_id)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            raise TansError(
                f"the weights of entry {entry_id} are missing ({path}); re-import the entry or "
                "rebuild it, and run 'tans zoo verify'."
            ) from None
        digest = hashlib.sha256(data).hexdigest()
        if digest != entry.sha256:
            raise TansError(
                f"the weights of entry {entry_id} were modified: sha256 {digest[:12]}... differs "
                f"from the recorded {entry.sha256[:12]}...; restore the file or rebuild the entry."
            )
        return data

    def load_state_dict(self, entry_id: str, *, device: str = "cpu") -> dict[str, Any]:
        """The weights of an entry as a state dict, after checking the sha256.

        Parameters
        ----------
        entry_id : str
            The entry.
        device : str, default "cpu"
            Where to put the tensors.

        Returns
        -------
        dict of str to torch.Tensor

        Raises
        ------
        TansError
            When the id is unknown, or the weights are missing or tampered.
        """
        from safetensors.torch import load

        data = self.read_weights(entry_id)  # hash and parse the same bytes: no check-then-swap gap
        tensors = load(data)
        return {k: v.to(device) for k, v in tensors.items()} if device != "cpu" else tensors

    # -- transfer records ----------------------------------------------------------------------

    def add_transfer(self, record: TransferRecord) -> bool:
        """Store one transfer record (append-only).

        Parameters
        ----------
        record : TransferRecord
            The record; ``created`` is filled in when empty.

        Returns
        -------
        bool
            True when it was stored; False when its id is already stored (the stored record
            stays: a re-run never replaces a result).

        Raises
        ------
        TansError
            When ``record.model_id`` is not an entry of this zoo, or the id is already stored for
            another fine-tune (other model, target, recipe or seed).
        """
        return self.add_transfers([record]) == 1

    def add_transfers(self, records: Iterable[TransferRecord]) -> int:
        """Store many transfer records in one transaction: all of them or, on an error, none.

        Parameters
        ----------
        records : iterable of TransferRecord
            Records whose ids are already stored are skipped.

        Returns
        -------
        int
            How many were new.

        Raises
        ------
        TansError
            As :meth:`add_transfer`, for any of the records.
        """
        records = list(records)
        bad = [type(r).__name__ for r in records if not isinstance(r, TransferRecord)]
        if bad:
            raise TansError(f"expected TransferRecord objects, got {bad[0]}; build one with TransferRecord(...).")
        if not records:
            return 0
        conn, now, added = self._connect(), _utc_now(), 0
        insert = (
            f"INSERT INTO transfers ({', '.join(_TRANSFER_COLUMNS)}) "
            f"VALUES ({', '.join('?' * len(_TRANSFER_COLUMNS))})"
        )
        with _write_transaction(conn):  # a kill -9 leaves every row of the batch or none
            for model_id in dict.fromkeys(r.model_id for r in records):
                if conn.execute("SELECT 1 FROM entries WHERE id = ?", (model_id,)).fetchone() is None:
                    raise TansError(
                        f"transfer record for model {model_id!r}: no such entry in the zoo at {self.path} "
                        f"({len(self)} entries); add or import the model first."
                        f"{did_you_mean(model_id, self.ids())}"
                    )
            for record in records:
                existing = self._get_transfer(record.id)
                if existing is not None:
                    if not existing.same_run(record):
                        raise TansError(
                            f"transfer record id {record.id} is already stored for another fine-tune "
                            f"(model {existing.model_id} on {existing.target}, seed {existing.seed}); "
                            "leave the id empty to derive it from the run."
                        )
                    continue
                conn.execute(insert, self._transfer_row(replace(record, created=record.created or now)))
                added += 1
        return added

    @staticmethod
    def _transfer_row(record: TransferRecord) -> tuple[Any, ...]:
        values = {name: getattr(record, name) for name in _TRANSFER_COLUMNS}
        values["curve"] = json.dumps(list(record.curve), allow_nan=False)
        return tuple(values[name] for name in _TRANSFER_COLUMNS)

    @staticmethod
    def _transfer_from_row(row: tuple[Any, ...]) -> TransferRecord:
        values = dict(zip(_TRANSFER_COLUMNS, row))
        values["curve"] = tuple(json.loads(values["curve"]))
        return TransferRecord(**values)

    def _get_transfer(self, record_id: str) -> TransferRecord | None:
        row = self._row_by_id("transfers", _TRANSFER_COLUMNS, record_id)
        return None if row is None else self._transfer_from_row(row)

    def transfers(
        self, *, model_id: str | None = None, target: str | None = None, family: str | None = None
    ) -> list[TransferRecord]:
        """Transfer records that meet every given filter, in insertion order.

        Parameters
        ----------
        model_id : str, optional
            Only fine-tunes of this entry.
        target : str, optional
            Only fine-tunes on the target task of this name.
        family : str, optional
            Only fine-tunes on targets of this family.

        Returns
        -------
        list of TransferRecord
        """
        clauses, args = [], []
        for column, value in (("model_id", model_id), ("target", target), ("target_family", family)):
            if value is not None:
                clauses.append(f"{column} = ?")
                args.append(value)
        where = " WHERE " + " AND ".join(clauses) if clauses else ""
        rows = self._connect().execute(
            f"SELECT {', '.join(_TRANSFER_COLUMNS)} FROM transfers{where} ORDER BY rowid", args
        ).fetchall()
        return [self._transfer_from_row(r) for r in rows]

    def transfer_ids(self) -> set[str]:
        """Ids of every stored transfer record."""
        return {r[0] for r in self._connect().execute("SELECT id FROM transfers")}

    def transfer_count(self) -> int:
        """Number of stored transfer records."""
        return self._connect().execute("SELECT COUNT(*) FROM transfers").fetchone()[0]

    # -- claims --------------------------------------------------------------------------------

    def claim(self, unit_id: str, owner: str, *, lease_s: float) -> str:
        """Claim a build or transfer unit for ``owner`` until ``lease_s`` seconds from now.

        Parameters
        ----------
        unit_id : str
            The id the unit's entry or transfer record will have.
        owner : str
            Who claims, from :func:`claim_owner`.
        lease_s : float
            Lease length; :meth:`renew_claims` extends it.

        Returns
        -------
        str
            ``"claimed"`` when ``owner`` now holds the unit (it was free, or its lease expired, or
            its owner's process on this host is gone, or ``owner`` held it already); ``"done"``
            when an entry or transfer record with this id is stored; ``"held"`` when another
            owner holds a live lease.
        """
        conn, now = self._connect(), time.time()
        with _write_transaction(conn):
            conn.execute(_CLAIMS_TABLE)
            stored = "SELECT 1 FROM entries WHERE id = ?1 UNION ALL SELECT 1 FROM transfers WHERE id = ?1"
            if conn.execute(stored, (unit_id,)).fetchone() is not None:
                conn.execute("DELETE FROM claims WHERE unit = ?", (unit_id,))
                return "done"
            row = conn.execute("SELECT owner, expires FROM claims WHERE unit = ?", (unit_id,)).fetchone()
            if row is not None and row[0] != owner and row[1] > now and _owner_alive(row[0]):
                return "held"
            conn.execute("INSERT OR REPLACE INTO claims VALUES (?, ?, ?)", (unit_id, owner, now + lease_s))
            return "claimed"

    def renew_claims(self, owner: str, *, lease_s: float) -> int:
        """Extend every lease of ``owner`` to ``lease_s`` seconds from now; return how many."""
        conn = self._connect()
        with _write_transaction(conn):
            conn.execute(_CLAIMS_TABLE)
            return conn.execute("UPDATE claims SET expires = ? WHERE owner = ?", (time.time() + lease_s, owner)).rowcount

    def release_claims(self, owner: str) -> None:
        """Drop every lease of ``owner`` (a builder that ends)."""
        conn = self._connect()
        with _write_transaction(conn):
            conn.execute(_CLAIMS_TABLE)
            conn.execute("DELETE FROM claims WHERE owner = ?", (owner,))

    # -- tasks ---------------------------------------------------------------------------------

    def register_task(self, ref: TaskRef) -> None:
        """Remember how to load a task (the first reference stored for a fingerprint stays).

        Parameters
        ----------
        ref : TaskRef
            Name, fingerprint, family, source and class count of the task.
        """
        self._register_tasks([ref])

    def _register_tasks(self, refs: Iterable[TaskRef]) -> None:
        refs = list(refs)
        bad = [type(r).__name__ for r in refs if not isinstance(r, TaskRef)]
        if bad:
            raise TansError(f"expected TaskRef objects, got {bad[0]}; build one with TaskRef.from_dataset(dataset).")
        if not refs:
            return
        conn = self._connect()
        with _write_transaction(conn):
            conn.executemany(
                f"INSERT OR IGNORE INTO tasks ({', '.join(_TASK_COLUMNS)}) VALUES ({', '.join('?' * len(_TASK_COLUMNS))})",
                [tuple(getattr(r, c) for c in _TASK_COLUMNS) for r in refs],
            )

    def tasks(self) -> dict[str, TaskRef]:
        """Every task reference, keyed by fingerprint, in the order they were registered."""
        rows = self._connect().execute(f"SELECT {', '.join(_TASK_COLUMNS)} FROM tasks ORDER BY rowid").fetchall()
        return {r[0]: TaskRef(**dict(zip(_TASK_COLUMNS, r))) for r in rows}

    def load_task(self, fingerprint_or_name: str) -> Dataset:
        """Load a task this zoo knows, checking that its data is still what the zoo recorded.

        Parameters
        ----------
        fingerprint_or_name : str
            A task fingerprint (or a unique prefix of at least 8 characters), or a task name.

        Returns
        -------
        Dataset
            Loaded with :func:`tans.data.load_dataset` from the task's recorded source; without a
            recorded source (zoos made before task references existed), by the name of the entry
            or transfer record's task.

        Raises
        ------
        TansError
            When the zoo knows no such task, a name is ambiguous, the source cannot be loaded any
            more (e.g. the dataset folder moved), or the loaded data has another fingerprint.
        """
        from tans.data import load_dataset

        name, fingerprint, source = self._find_task(fingerprint_or_name)
        try:
            dataset = load_dataset(source)
        except TansError as exc:
            if os.path.isabs(source) and not os.path.exists(source):
                raise TansError(
                    f"cannot load task {name!r} of the zoo at {self.path}: it was recorded at {source}, "
                    f"which no longer exists; put the dataset back there or link it (ln -s NEW_PATH {source})."
                ) from None
            raise TansError(f"cannot load task {name!r} of the zoo at {self.path} from {source!r}: {exc}") from None
        if dataset.fingerprint != fingerprint:
            raise TansError(
                f"task {name!r} loaded from {source!r} has changed since the zoo recorded it: fingerprint "
                f"{dataset.fingerprint[:12]}... instead of {fingerprint[:12]}...; restore the original data, "
                "or treat the new data as a new task (its own fingerprint)."
            )
        return dataset

    def _find_task(self, key: str) -> tuple[str, str, str]:
        """``(name, fingerprint, source)`` of a task given by fingerprint, fingerprint prefix or name."""
        if not isinstance(key, str) or not key:
            raise TansError(f"expected a task fingerprint or name, got {key!r}.")
        refs = [(r.name, r.fingerprint, r.source) for r in self.tasks().values()]
        matches = [r for r in refs if r[1] == key] or [r for r in refs if r[0] == key]
        if not matches and len(key) >= 8:
            matches = [r for r in refs if r[1].startswith(key)]
        conn = self._connect()
        if not matches:  # no reference (a zoo upgraded from version 1): load the task by its name
            rows = conn.execute(
                "SELECT task, task_fingerprint FROM entries WHERE task = ?1 OR task_fingerprint = ?1 "
                "UNION SELECT target, target_fingerprint FROM transfers WHERE target = ?1 OR target_fingerprint = ?1",
                (key,),
            ).fetchall()
            matches = [(name, fp, name) for name, fp in sorted(set(rows))]
        if not matches:
            known = sorted({r[0] for r in refs} | {t for (t,) in conn.execute("SELECT DISTINCT task FROM entries")})
            raise TansError(
                f"the zoo at {self.path} knows no task {key!r} (by fingerprint or name); known tasks: "
                f"{', '.join(known[:10]) or 'none'}{' ...' if len(known) > 10 else ''}.{did_you_mean(key, known)}"
            )
        if len({m[1] for m in matches}) > 1:
            fps = ", ".join(sorted(m[1][:16] for m in matches))
            raise TansError(
                f"the zoo at {self.path} knows several tasks {key!r} (fingerprints {fps}); pass the fingerprint instead."
            )
        return matches[0]

    # -- models --------------------------------------------------------------------------------

    def load_model(
        self, entry_id: str, *, num_classes: int | None = None, pretrained: bool = True, seed: int = 0
    ) -> nn.Module:
        """Build an entry's architecture, load its weights, and optionally give it a new head.

        Parameters
        ----------
        entry_id : str
            Entry id (unknown ids raise with close ids suggested).
        num_classes : int or None
            New classifier width; ``None`` keeps the entry's own classifier.
        pretrained : bool
            Load the entry's weights (sha256-verified); ``False`` keeps the random initialisation.
        seed : int
            Seeds the random initialisation and the new classifier.

        Returns
        -------
        torch.nn.Module
            On the CPU, in train mode.

        Raises
        ------
        TansError
            For an unknown id (close ids suggested), or weights that are missing, modified, or do
            not fit the architecture.
        """
        import torch

        from tans.space.registry import create_model

        entry = self.get(entry_id)
        torch.manual_seed(seed)
        model = create_model(entry.arch, num_classes=entry.num_classes)
        if pretrained:
            state = self.load_state_dict(entry_id)
            try:
                model.load_state_dict(state, strict=True)
            except RuntimeError as exc:
                lines = str(exc).splitlines()
                first = lines[1].strip() if len(lines) > 1 else str(exc)
                raise TansError(
                    f"the weights of zoo entry {entry_id} do not fit its architecture {entry.arch} ({first}); "
                    "run 'tans zoo verify' and rebuild the entry."
                ) from None
        if num_classes is not None:
            torch.manual_seed(seed)  # the same new head whether the body is pretrained or not
            model.reset_classifier(num_classes)
        return model

    # -- checking ------------------------------------------------------------------------------

    def verify(self) -> VerifyReport:
        """Check every entry's weights against its sha256 and look for orphan files.

        Returns
        -------
        VerifyReport
        """
        conn = self._connect()
        database_ok = conn.execute("PRAGMA quick_check").fetchone()[0] == "ok"
        rows = conn.execute("SELECT id, sha256 FROM entries ORDER BY rowid").fetchall()
        missing, tampered = [], []
        for entry_id, sha in rows:
            path = self.weights_path(entry_id)
            if not path.is_file():
                missing.append(entry_id)
                continue
            h = hashlib.sha256()
            with open(path, "rb") as fh:
                for block in iter(lambda: fh.read(1 << 20), b""):
                    h.update(block)
            if h.hexdigest() != sha:
                tampered.append(entry_id)
        return VerifyReport(
            checked=len(rows),
            missing=tuple(missing),
            tampered=tuple(tampered),
            orphans=tuple(p.name for p in self._orphans({r[0] for r in rows})),
            database_ok=database_ok,
        )

    def _orphans(self, known: set[str]) -> list[Path]:
        out = []
        for p in sorted(self.weights_dir.iterdir()) if self.weights_dir.is_dir() else []:
            stem = p.name[: -len(WEIGHTS_SUFFIX)] if p.name.endswith(WEIGHTS_SUFFIX) else None
            if stem is None or stem not in known or not ID_PATTERN.fullmatch(stem):
                out.append(p)
        return out

    def remove_orphans(self, *, min_age_s: float = 3600.0) -> list[str]:
        """Delete orphan files in ``weights/`` older than ``min_age_s`` seconds.

        The age guard keeps files of a write still in flight in another process.

        Parameters
        ----------
        min_age_s : float, default 3600
            Only files last modified at least this long ago are removed.

        Returns
        -------
        list of str
            Names of the removed files.
        """
        conn = self._connect()
        conn.execute("BEGIN IMMEDIATE")  # no writer can commit a row for a file we look at
        try:
            known = {r[0] for r in conn.execute("SELECT id FROM entries")}
            now, removed = time.time(), []
            for p in self._orphans(known):
                if p.is_file() and not p.is_symlink() and now - p.stat().st_mtime >= min_age_s:
                    p.unlink(missing_ok=True)
                    removed.append(p.name)
        finally:
            conn.execute("COMMIT")
        return removed


def open_zoo(zoo: Zoo | str | os.PathLike[str] | None) -> Zoo:
    """The zoo object for ``zoo``: a :class:`Zoo` as is, a path opened, ``None`` the default zoo.

    Raises
    ------
    ZooError
        When there is no default zoo; the message says how to create one.
    TansError
        When a given path holds no zoo (see :meth:`Zoo.open`).
    """
    if isinstance(zoo, Zoo):
        return zoo
    if zoo is not None:
        return Zoo.open(zoo)
    path = default_zoo_dir()
    if not (path / DB_NAME).exists():
        raise ZooError(
            f"expected the default zoo at {path}, but there is none; create it with 'tans demo' "
            "or 'tans zoo build', or pass --zoo DIR."
        )
    return Zoo.open(path)
