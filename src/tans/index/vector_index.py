"""Model embeddings in a FAISS index behind one small interface: add / search / write / read.

Every index ranks by inner product (cosine similarity for the unit vectors the searcher makes)
and is built from a short spec string:

=====================  ================================================================
spec                   index
=====================  ================================================================
``"flat"``             exact search, ``faiss.IndexFlatIP``
``"hnsw32"``           approximate graph search, ``faiss.IndexHNSWFlat`` (M=32), no training
``"ivf1024,flat"``     approximate inverted lists, ``faiss.IndexIVFFlat`` (trained on the
                       first ``add``)
``"auto"``             ``"flat"`` below :data:`AUTO_EXACT_MAX` entries, else ``"hnsw32"``
=====================  ================================================================

Why HNSW for large zoos: no training, appends need no rebuild (the zoo is append-only), about a
millisecond per query, and its vectors stay contiguous, so an exact filtered search scores only
the allowed rows. IVF builds faster but on clustered embeddings needed 1/8 of its lists probed for
recall@10 >= 0.95, and a filtered IVF search cannot reach the allowed vectors without scanning the
lists (benchmarks/retrieval_scaling.py measures both). An IVF index probes ``max(16, nlist // 8)``
lists unless told otherwise.

The FAISS index is always wrapped in ``faiss.IndexIDMap`` so that results carry the caller's
int64 ids (zoo entry ids), and it is persisted with ``faiss.write_index`` (never pickle).

Constraint filtering happens *before* ranking: ``search(..., allowed_ids=...)`` hands FAISS an
``IDSelectorBitmap`` so only allowed entries are scored. An approximate index loses recall under a
selective filter and can even find fewer than ``k`` allowed entries (HNSW walks a graph whose
neighbours are mostly filtered out; IVF probes lists that hold few allowed entries). So:

- when at most ``exact_fraction`` of the index (default 20%) is allowed, the search is exact: flat
  and HNSW score only the allowed rows of their contiguous vectors (about ``n_allowed * dim``
  operations); IVF probes every list and skips disallowed entries by their bit. The flat index is
  always searched exactly. Measured at 10^6 entries on one shared core: ~5 ms with 0.5% allowed,
  but ~50-60 ms with 10% allowed (memory-bound, like a full scan); a lower ``exact_fraction`` trades
  that time for the approximate path's recall;
- above that, the approximate search runs with its effort (IVF ``nprobe``, HNSW ``efSearch``)
  multiplied by ``n / n_allowed`` (at most 5x), so it sees as many allowed candidates as an
  unfiltered search;
- any query row that still came back with fewer than ``min(k, n_allowed)`` results is re-run
  exactly.

So a filtered search returns ``min(k, n_allowed)`` results per query; the rest is padding with id
``-1`` and score ``-inf``.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path

import faiss
import numpy as np

from tans._errors import TansError, did_you_mean

__all__ = ["AUTO_EXACT_MAX", "VectorIndex", "make_index", "read_index", "parse_spec"]

#: Below this many entries ``make_index("auto", ...)`` builds an exact index.
AUTO_EXACT_MAX = 50_000

# Defaults measured on clustered unit vectors of dim 128 (benchmarks/retrieval_scaling.py).
_DEFAULT_EF_SEARCH = 128
_DEFAULT_EF_CONSTRUCTION = 40
_IVF_TRAIN_PER_LIST = 40  # k-means sample per list (FAISS asks for at least 39; cost grows with it)
_IVF_MIN_TRAIN_PER_LIST = 4
_EXACT_FRACTION = 0.2

_SPEC_FORMS = ("flat", "hnsw{M}", "ivf{nlist},flat", "auto")


@dataclass(frozen=True)
class IndexSpec:
    """A parsed index spec string.

    Attributes
    ----------
    kind : str
        ``"flat"``, ``"hnsw"`` or ``"ivf"``.
    m : int
        HNSW graph degree (``kind == "hnsw"`` only).
    nlist : int
        Number of inverted lists (``kind == "ivf"`` only).
    """

    kind: str
    m: int = 0
    nlist: int = 0

    def __str__(self) -> str:
        if self.kind == "hnsw":
            return f"hnsw{self.m}"
        if self.kind == "ivf":
            return f"ivf{self.nlist},flat"
        return "flat"


def parse_spec(spec: str) -> IndexSpec:
    """Parse ``"flat"``, ``"hnsw32"`` or ``"ivf1024,flat"`` (``"auto"`` is resolved by :func:`make_index`).

    Raises
    ------
    TansError
        If the spec is not one of the known forms.
    """
    text = str(spec).strip().lower()
    if text == "flat":
        return IndexSpec("flat")
    if m := re.fullmatch(r"hnsw(\d+)", text):
        degree = int(m.group(1))
        if not 2 <= degree <= 256:
            raise TansError(f"HNSW degree must be between 2 and 256, got {degree} in '{spec}'. Try 'hnsw32'.")
        return IndexSpec("hnsw", m=degree)
    if m := re.fullmatch(r"ivf(\d+),flat", text):
        nlist = int(m.group(1))
        if nlist < 1:
            raise TansError(f"IVF needs at least 1 list, got {nlist} in '{spec}'. Try 'ivf1024,flat'.")
        return IndexSpec("ivf", nlist=nlist)
    raise TansError(
        f"Unknown index spec '{spec}'. Expected one of {', '.join(_SPEC_FORMS)}."
        + did_you_mean(text, ["flat", "hnsw32", "ivf1024,flat", "auto"])
    )


def _auto_nprobe(nlist: int) -> int:
    # Probing 1/8 of the lists gave recall@10 >= 0.95 on the clustered benchmark zoos.
    return int(min(nlist, max(16, nlist // 8)))


def make_index(
    spec: str,
    dim: int,
    n: int | None = None,
    *,
    ef_search: int = _DEFAULT_EF_SEARCH,
    ef_construction: int = _DEFAULT_EF_CONSTRUCTION,
    nprobe: int | None = None,
    exact_fraction: float = _EXACT_FRACTION,
    seed: int = 0,
) -> VectorIndex:
    """Build an empty inner-product index from a spec string.

    Parameters
    ----------
    spec : str
        ``"flat"``, ``"hnsw{M}"``, ``"ivf{nlist},flat"`` or ``"auto"`` (see the module docstring).
    dim : int
        Embedding dimension.
    n : int, optional
        Expected number of entries; required by ``"auto"`` (exact below :data:`AUTO_EXACT_MAX`).
    ef_search : int
        HNSW candidate list size at query time (higher: better recall, slower).
    ef_construction : int
        HNSW candidate list size while building.
    nprobe : int, optional
        IVF lists probed per query; default 1/8 of the lists, at least 16.
    exact_fraction : float
        A filtered search that allows at most this fraction of the entries is computed exactly.
    seed : int
        Seed for the IVF training sample and k-means.

    Returns
    -------
    VectorIndex
        An empty index.

    Raises
    ------
    TansError
        If the spec is unknown, ``dim`` is not positive, or ``"auto"`` is used without ``n``.
    """
    if not isinstance(dim, (int, np.integer)) or dim < 1:
        raise TansError(f"Index dimension must be a positive integer, got {dim!r}.")
    dim = int(dim)
    if str(spec).strip().lower() == "auto":
        if n is None:
            raise TansError("make_index('auto', ...) needs the expected number of entries n to choose a kind.")
        parsed = IndexSpec("flat") if n < AUTO_EXACT_MAX else IndexSpec("hnsw", m=32)
    else:
        parsed = parse_spec(spec)

    if parsed.kind == "flat":
        inner = faiss.IndexFlatIP(dim)
    elif parsed.kind == "hnsw":
        inner = faiss.IndexHNSWFlat(dim, parsed.m, faiss.METRIC_INNER_PRODUCT)
        inner.hnsw.efConstruction = int(ef_construction)
        inner.hnsw.efSearch = int(ef_search)
    else:
        quantizer = faiss.IndexFlatIP(dim)
        inner = faiss.IndexIVFFlat(quantizer, dim, parsed.nlist, faiss.METRIC_INNER_PRODUCT)
        inner.nprobe = int(nprobe) if nprobe is not None else _auto_nprobe(parsed.nlist)
        inner.cp.niter = 10  # k-means converges enough for list assignment
        inner.cp.seed = int(seed)
    return VectorIndex(faiss.IndexIDMap(inner), exact_fraction=exact_fraction, seed=seed)


def read_index(path: str | Path, *, exact_fraction: float = _EXACT_FRACTION) -> VectorIndex:
    """Load an index written by :meth:`VectorIndex.write` (same as :meth:`VectorIndex.read`)."""
    return VectorIndex.read(path, exact_fraction=exact_fraction)


class VectorIndex:
    """Inner-product search over ``(n, dim)`` float32 vectors keyed by int64 ids.

    Build one with :func:`make_index`; load one with :meth:`read`.

    Parameters
    ----------
    index : faiss.IndexIDMap
        A FAISS id map around a flat, HNSW or IVF-flat inner-product index.
    exact_fraction : float
        A filtered search that allows at most this fraction of the entries is computed exactly.
    seed : int
        Seed for the IVF training sample.
    """

    def __init__(self, index: faiss.Index, *, exact_fraction: float = _EXACT_FRACTION, seed: int = 0) -> None:
        self._index = index
        self._inner = faiss.downcast_index(index.index)
        self.exact_fraction = float(exact_fraction)
        self.seed = int(seed)
        self._ids = faiss.vector_to_array(index.id_map).astype(np.int64)  # position -> id
        # (first id,) when ids are consecutive, else (sorted ids, their positions); built on demand
        self._sorted: tuple | None = None

    # ------------------------------------------------------------------ properties
    @property
    def dim(self) -> int:
        """Embedding dimension."""
        return int(self._index.d)

    @property
    def spec(self) -> str:
        """The spec string of this index (``"flat"``, ``"hnsw32"``, ``"ivf1024,flat"``)."""
        return str(self._spec())

    @property
    def is_exact(self) -> bool:
        """True for the flat index."""
        return self._spec().kind == "flat"

    @property
    def ids(self) -> np.ndarray:
        """``(n,)`` int64 ids in insertion order (a copy)."""
        return self._ids.copy()

    def __len__(self) -> int:
        return int(self._index.ntotal)

    def __repr__(self) -> str:
        return f"VectorIndex(spec='{self.spec}', dim={self.dim}, n={len(self)})"

    def _spec(self) -> IndexSpec:
        inner = self._inner
        if isinstance(inner, faiss.IndexHNSWFlat):
            return IndexSpec("hnsw", m=int(inner.hnsw.nb_neighbors(1)))
        if isinstance(inner, faiss.IndexIVFFlat):
            return IndexSpec("ivf", nlist=int(inner.nlist))
        return IndexSpec("flat")

    # ------------------------------------------------------------------ add
    def add(self, vectors: np.ndarray, ids: np.ndarray) -> VectorIndex:
        """Add vectors under the given ids.

        An untrained IVF index is trained on (a sample of) the first batch added.

        Parameters
        ----------
        vectors : np.ndarray
            ``(n, dim)`` floating-point vectors (stored as float32; unit norm for cosine ranking).
        ids : np.ndarray
            ``(n,)`` distinct non-negative integer ids, not already in the index.

        Returns
        -------
        VectorIndex
            ``self``.

        Raises
        ------
        TansError
            On a wrong shape or dtype, non-finite values, negative or repeated ids, or an IVF index
            whose first batch is too small to train.
        """
        x = self._as_matrix(vectors, "vectors")
        ids_arr = np.asarray(ids)
        if ids_arr.ndim != 1 or ids_arr.shape[0] != x.shape[0]:
            raise TansError(
                f"ids must have shape ({x.shape[0]},) to match the vectors, got shape {ids_arr.shape}."
            )
        if ids_arr.size and not np.issubdtype(ids_arr.dtype, np.integer):
            raise TansError(f"ids must be integers (int64), got dtype {ids_arr.dtype}.")
        ids_arr = ids_arr.astype(np.int64)
        if ids_arr.size and ids_arr.min() < 0:
            raise TansError(f"ids must be non-negative (-1 marks padding), got {int(ids_arr.min())}.")
        uniq, counts = np.unique(ids_arr, return_counts=True)
        if (counts > 1).any():
            raise TansError(f"ids must be distinct; {int(uniq[counts > 1][0])} appears more than once.")
        if len(self) and np.isin(ids_arr, self._ids).any():
            dup = int(ids_arr[np.isin(ids_arr, self._ids)][0])
            raise TansError(f"id {dup} is already in the index; ids must be unique across adds.")
        if x.shape[0] == 0:
            return self
        if isinstance(self._inner, faiss.IndexIVFFlat) and not self._inner.is_trained:
            self._train_ivf(x)
        self._index.add_with_ids(x, ids_arr)
        self._ids = np.concatenate([self._ids, ids_arr])
        self._sorted = None
        return self

    def _train_ivf(self, x: np.ndarray) -> None:
        nlist = int(self._inner.nlist)
        if x.shape[0] < _IVF_MIN_TRAIN_PER_LIST * nlist:
            raise TansError(
                f"An IVF index with {nlist} lists needs at least {_IVF_MIN_TRAIN_PER_LIST * nlist} vectors "
                f"in its first add to train, got {x.shape[0]}. Use 'flat', 'auto', or fewer lists."
            )
        rng = np.random.default_rng(self.seed)
        size = min(x.shape[0], _IVF_TRAIN_PER_LIST * nlist)
        sample = x if size == x.shape[0] else x[np.sort(rng.choice(x.shape[0], size, replace=False))]
        self._inner.train(np.ascontiguousarray(sample))

    # ------------------------------------------------------------------ search
    def search(
        self, queries: np.ndarray, k: int, *, allowed_ids: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """The ``k`` entries with the highest inner product with each query.

        Parameters
        ----------
        queries : np.ndarray
            ``(q, dim)`` floating-point queries.
        k : int
            Results per query (at least 1).
        allowed_ids : np.ndarray, optional
            ``(a,)`` ids that may be returned (e.g. the entries that satisfy the constraints);
            ids not in the index are ignored. ``None`` allows every entry. Filtering happens before
            ranking; a filter allowing at most ``exact_fraction`` of the entries is searched
            exactly (module docstring).

        Returns
        -------
        scores : np.ndarray
            ``(q, k)`` float32 inner products, best first; ``-inf`` where padded.
        ids : np.ndarray
            ``(q, k)`` int64 ids; ``-1`` where fewer than ``k`` entries (or allowed entries) exist.

        Raises
        ------
        TansError
            On a wrong shape or dtype of ``queries``, or ``k < 1``.
        """
        q = self._as_matrix(queries, "queries")
        if not isinstance(k, (int, np.integer)) or isinstance(k, bool) or k < 1:
            raise TansError(f"k must be a positive integer, got {k!r}.")
        k = int(k)
        n = len(self)
        if n == 0 or q.shape[0] == 0:
            return _padding(q.shape[0], k)
        if allowed_ids is None:
            return self._finish(*self._approx_then_exact(q, min(k, n), None), k)

        allowed_mask = self._allowed_mask(allowed_ids)  # (n,) bool over positions
        n_allowed = int(np.count_nonzero(allowed_mask))
        if n_allowed == 0:
            return _padding(q.shape[0], k)
        packed = np.packbits(allowed_mask, bitorder="little")
        selector = faiss.IDSelectorBitmap(n, faiss.swig_ptr(packed))  # reads `packed`: keep it alive
        kk = min(k, n_allowed)
        if n_allowed <= self.exact_fraction * n or isinstance(self._inner, faiss.IndexFlat):
            result = self._exact(q, kk, selector, allowed_mask)
        else:
            result = self._approx_then_exact(q, kk, selector, allowed_mask, effort=min(5.0, n / n_allowed))
        del selector, packed
        return self._finish(*result, k)

    def _exact(self, q: np.ndarray, kk: int, selector: faiss.IDSelector | None, mask: np.ndarray | None = None):
        """Exact top-``kk`` over the selected entries (``mask``: the same selection as a bool array)."""
        inner = self._inner
        if isinstance(inner, faiss.IndexIVFFlat):
            # Probing every list is exhaustive; FAISS skips unselected entries by their bit.
            return inner.search(q, kk, params=faiss.SearchParametersIVF(sel=selector, nprobe=int(inner.nlist)))
        flat = faiss.downcast_index(inner.storage) if isinstance(inner, faiss.IndexHNSWFlat) else inner
        if mask is None or np.count_nonzero(mask) > self.exact_fraction * len(self):
            # Unfiltered, or most rows allowed: FAISS's own scan (no copy of the vectors).
            params = faiss.SearchParameters(sel=selector) if selector is not None else None
            return flat.search(q, kk, params=params)
        # The vectors are contiguous: score only the allowed rows, O(n_allowed * dim), where a FAISS
        # flat search with a selector still walks all n rows.
        xb = faiss.rev_swig_ptr(flat.get_xb(), len(self) * self.dim).reshape(len(self), self.dim)  # no copy
        positions = np.flatnonzero(mask)
        sims = q @ xb[positions].T  # (q, n_allowed)
        if kk < sims.shape[1]:
            top = np.argpartition(-sims, kk - 1, axis=1)[:, :kk]
        else:
            top = np.broadcast_to(np.arange(sims.shape[1]), sims.shape).copy()
        top_scores = np.take_along_axis(sims, top, axis=1)
        order = np.argsort(-top_scores, axis=1, kind="stable")
        return np.take_along_axis(top_scores, order, axis=1), positions[np.take_along_axis(top, order, axis=1)]

    def _approx_then_exact(
        self,
        q: np.ndarray,
        kk: int,
        selector: faiss.IDSelector | None,
        mask: np.ndarray | None = None,
        *,
        effort: float = 1.0,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Approximate search (``effort`` x the usual work); rows short of ``kk`` results are redone exactly."""
        inner = self._inner
        if isinstance(inner, faiss.IndexHNSWFlat):
            ef = max(int(math.ceil(inner.hnsw.efSearch * effort)), kk)
            params = faiss.SearchParametersHNSW(sel=selector, efSearch=ef)
        elif isinstance(inner, faiss.IndexIVFFlat):
            nprobe = min(int(inner.nlist), int(math.ceil(inner.nprobe * effort)))
            params = faiss.SearchParametersIVF(sel=selector, nprobe=nprobe)
        else:
            return self._exact(q, kk, selector, mask)
        scores, pos = inner.search(q, kk, params=params)
        short = np.flatnonzero((pos >= 0).sum(axis=1) < kk)
        if short.size:
            scores[short], pos[short] = self._exact(q[short], kk, selector, mask)
        return scores, pos

    def _allowed_mask(self, allowed_ids: np.ndarray) -> np.ndarray:
        """``(n,)`` bool over positions: True where the entry's id is in ``allowed_ids``."""
        allowed = np.asarray(allowed_ids)
        if allowed.ndim != 1:
            raise TansError(f"allowed_ids must be a 1-D array of ids, got shape {allowed.shape}.")
        if allowed.size and not np.issubdtype(allowed.dtype, np.integer):
            raise TansError(f"allowed_ids must be integers (int64), got dtype {allowed.dtype}.")
        allowed = allowed.astype(np.int64, copy=False)
        n = len(self)
        mask = np.zeros(n, dtype=bool)
        if self._sorted is None:
            first = int(self._ids[0])
            if np.array_equal(self._ids, np.arange(first, first + n)):
                self._sorted = (first,)  # consecutive ids (the common case): position = id - first
            else:
                order = np.argsort(self._ids, kind="stable")
                self._sorted = (self._ids[order], order)
        if len(self._sorted) == 1:
            offset = allowed - self._sorted[0]
            mask[offset[(offset >= 0) & (offset < n)]] = True
            return mask
        sorted_ids, order = self._sorted
        where = np.minimum(np.searchsorted(sorted_ids, allowed), n - 1)
        found = sorted_ids[where] == allowed
        mask[order[where[found]]] = True
        return mask

    def _finish(self, scores: np.ndarray, pos: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        out_scores, out_ids = _padding(pos.shape[0], k)
        valid = pos >= 0
        width = pos.shape[1]
        out_ids[:, :width] = np.where(valid, self._ids[np.where(valid, pos, 0)], -1)
        out_scores[:, :width] = np.where(valid, scores, -np.inf)
        return out_scores, out_ids

    def _as_matrix(self, array: np.ndarray, name: str) -> np.ndarray:
        x = np.asarray(array)
        if x.ndim != 2 or x.shape[1] != self.dim:
            hint = f" (for one vector use {name}[None, :])" if x.ndim == 1 and x.shape[0] == self.dim else ""
            raise TansError(f"{name} must have shape (n, {self.dim}), got shape {x.shape}{hint}.")
        if not np.issubdtype(x.dtype, np.floating):
            raise TansError(f"{name} must be floating point (float32), got dtype {x.dtype}.")
        x = np.ascontiguousarray(x, dtype=np.float32)
        if not np.isfinite(x).all():
            raise TansError(f"{name} contains NaN or infinite values; expected finite embeddings.")
        return x

    # ------------------------------------------------------------------ persistence
    def write(self, path: str | Path) -> Path:
        """Write the index with ``faiss.write_index`` (parent folders are created).

        Returns
        -------
        Path
            The path written.
        """
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        faiss.write_index(self._index, str(path))
        return path

    @classmethod
    def read(cls, path: str | Path, *, exact_fraction: float = _EXACT_FRACTION) -> VectorIndex:
        """Load an index written by :meth:`write`.

        Raises
        ------
        TansError
            If the file is missing, is not a FAISS index, or is not an inner-product id-mapped
            flat / HNSW / IVF-flat index.
        """
        path = Path(path)
        if not path.is_file():
            raise TansError(f"No index file at {path}. Build one with make_index(...).write(path).")
        try:
            raw = faiss.read_index(str(path))
        except RuntimeError as exc:
            raise TansError(f"{path} is not a readable FAISS index ({str(exc).splitlines()[-1][:120]}).") from None
        index = faiss.downcast_index(raw)
        # The downcast proxy must own the C++ object, or it dies with `raw` at the end of this call.
        raw.this.disown()
        index.this.own(True)
        if not isinstance(index, faiss.IndexIDMap):
            raise TansError(f"{path} holds a {type(index).__name__}, expected an id-mapped index written by tans.")
        inner = faiss.downcast_index(index.index)
        if not isinstance(inner, (faiss.IndexFlat, faiss.IndexHNSWFlat, faiss.IndexIVFFlat)):
            raise TansError(f"{path} wraps a {type(inner).__name__}; expected a flat, HNSW or IVF-flat index.")
        if index.metric_type != faiss.METRIC_INNER_PRODUCT:
            raise TansError(f"{path} ranks by L2 distance; tans indexes rank by inner product.")
        return cls(index, exact_fraction=exact_fraction)


def _padding(q: int, k: int) -> tuple[np.ndarray, np.ndarray]:
    return np.full((q, k), -np.inf, dtype=np.float32), np.full((q, k), -1, dtype=np.int64)
