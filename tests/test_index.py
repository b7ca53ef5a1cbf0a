"""Vector index (every spec) and constraint filtering."""

from __future__ import annotations

import faiss
import numpy as np
import pytest

from tans._errors import TansError
from tans.index import AUTO_EXACT_MAX, VectorIndex, make_index
from tans.zoo.constraints import Constraints, allowed_mask, require_allowed

SPECS = ["flat", "hnsw16", "ivf16,flat"]
DIM = 16


def _unit(n: int, seed: int = 0) -> np.ndarray:
    x = np.random.default_rng(seed).standard_normal((n, DIM)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def _exact_topk(queries, vectors, ids, k, allowed=None):
    keep = np.ones(len(ids), bool) if allowed is None else np.isin(ids, allowed)
    sims = queries @ vectors[keep].T
    order = np.argsort(-sims, axis=1)[:, :k]
    return ids[keep][order]


@pytest.fixture(scope="module")
def data():
    vectors = _unit(2000)
    ids = (np.arange(2000) * 7 + 3).astype(np.int64)  # not positions: the index must map them
    return vectors, ids, _unit(20, seed=1)


@pytest.mark.parametrize("spec", SPECS)
def test_search_matches_exact(spec, data):
    vectors, ids, queries = data
    index = make_index(spec, DIM).add(vectors, ids)
    assert len(index) == 2000 and index.spec == spec
    scores, found = index.search(queries, 10)
    assert scores.shape == found.shape == (20, 10)
    assert scores.dtype == np.float32 and found.dtype == np.int64
    expected = _exact_topk(queries, vectors, ids, 10)
    recall = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(found, expected)])
    assert recall >= (1.0 if spec == "flat" else 0.9)
    assert np.all(np.diff(scores, axis=1) <= 1e-6)  # best first
    # A stored vector finds itself with score 1.
    _, self_ids = index.search(vectors[:5], 1)
    assert (self_ids[:, 0] == ids[:5]).all()


@pytest.mark.parametrize("spec", SPECS)
@pytest.mark.parametrize("n_allowed", [3, 40, 400, 1500])
def test_filtered_search_returns_only_allowed_and_k_results(spec, n_allowed, data):
    vectors, ids, queries = data
    # Default exact_fraction 0.2: up to 400 of 2000 allowed is searched exactly, 1500 approximately.
    index = make_index(spec, DIM, ef_search=16).add(vectors, ids)
    allowed = np.random.default_rng(n_allowed).choice(ids, n_allowed, replace=False)
    scores, found = index.search(queries, 10, allowed_ids=np.concatenate([allowed, [10**9]]))  # unknown id ignored
    kk = min(10, n_allowed)
    assert (found[:, :kk] >= 0).all() and np.isin(found[:, :kk], allowed).all()
    assert (found[:, kk:] == -1).all() and np.isneginf(scores[:, kk:]).all()
    expected = _exact_topk(queries, vectors, ids, kk, allowed)
    if spec == "flat" or n_allowed <= 400:
        assert (found[:, :kk] == expected).all()
    else:
        assert np.mean([len(set(a) & set(b)) / kk for a, b in zip(found, expected)]) >= 0.9


def test_consecutive_ids_filter():
    vectors = _unit(300)
    index = make_index("flat", DIM).add(vectors, np.arange(1000, 1300))
    allowed = np.array([999, 1000, 1150, 1299, 1300, -4])  # out-of-range ids are ignored
    _, found = index.search(vectors[:3], 5, allowed_ids=allowed)
    assert set(found[0, :3]) == {1000, 1150, 1299} and (found[:, 3:] == -1).all()
    assert found[0, 0] == 1000


def test_hnsw_selective_filter_falls_back_to_exact(data):
    vectors, ids, queries = data
    # exact_fraction=0 forces the graph walk even for a 1% filter (effort x5: efSearch 50).
    index = make_index("hnsw16", DIM, ef_search=10, exact_fraction=0.0).add(vectors, ids)
    allowed = ids[::100]
    # The same graph searched by raw FAISS with the same selector and effort comes back short:
    # the case the wrapper repairs.
    raw = index._inner
    bits = np.packbits(np.isin(ids, allowed), bitorder="little")
    params = faiss.SearchParametersHNSW(sel=faiss.IDSelectorBitmap(len(ids), faiss.swig_ptr(bits)), efSearch=50)
    _, raw_pos = raw.search(queries, 10, params=params)
    assert (raw_pos < 0).any()
    _, found = index.search(queries, 10, allowed_ids=allowed)
    assert (found >= 0).all() and np.isin(found, allowed).all()
    expected = _exact_topk(queries, vectors, ids, 10, allowed)
    short = (raw_pos < 0).any(axis=1)
    assert (found[short] == expected[short]).all()  # the short rows were redone exactly


@pytest.mark.parametrize("spec", SPECS)
def test_write_read_roundtrip(spec, data, tmp_path):
    vectors, ids, queries = data
    index = make_index(spec, DIM).add(vectors, ids)
    path = index.write(tmp_path / "sub" / "models.faiss")
    loaded = VectorIndex.read(path)
    assert loaded.spec == spec and len(loaded) == len(index) and (loaded.ids == ids).all()
    for allowed in (None, ids[:30]):
        a = index.search(queries, 5, allowed_ids=allowed)
        b = loaded.search(queries, 5, allowed_ids=allowed)
        np.testing.assert_array_equal(a[1], b[1])
    # Still usable: add more after loading.
    loaded.add(_unit(10, seed=5), np.arange(10**6, 10**6 + 10))
    assert len(loaded) == 2010


def test_fewer_entries_than_k_are_padded():
    index = make_index("flat", DIM).add(_unit(3), np.array([5, 6, 7]))
    scores, found = index.search(_unit(2, seed=3), 5)
    assert (found[:, 3:] == -1).all() and np.isneginf(scores[:, 3:]).all()
    assert set(found[0, :3]) == {5, 6, 7}
    empty = make_index("hnsw16", DIM)
    assert (empty.search(_unit(1), 4)[1] == -1).all()
    assert (index.search(_unit(1), 2, allowed_ids=np.array([], dtype=np.int64))[1] == -1).all()


def test_auto_picks_exact_below_threshold_and_approximate_above():
    assert make_index("auto", DIM, 1000).spec == "flat"
    big = make_index("auto", DIM, AUTO_EXACT_MAX * 4)
    assert not big.is_exact and big.spec == "hnsw32"
    with pytest.raises(TansError, match="needs the expected number of entries"):
        make_index("auto", DIM)


def test_errors_name_expected_and_got(tmp_path):
    index = make_index("flat", DIM)
    with pytest.raises(TansError, match=r"shape \(n, 16\), got shape \(4, 8\)"):
        index.add(np.zeros((4, 8), np.float32), np.arange(4))
    with pytest.raises(TansError, match="floating point.*got dtype int64"):
        index.add(np.zeros((4, DIM), np.int64), np.arange(4))
    with pytest.raises(TansError, match=r"ids must have shape \(4,\)"):
        index.add(_unit(4), np.arange(3))
    with pytest.raises(TansError, match="ids must be integers"):
        index.add(_unit(4), np.arange(4, dtype=np.float64))
    with pytest.raises(TansError, match="distinct"):
        index.add(_unit(2), np.array([1, 1]))
    with pytest.raises(TansError, match="NaN"):
        index.add(np.full((1, DIM), np.nan, np.float32), np.array([0]))
    index.add(_unit(4), np.arange(4))
    with pytest.raises(TansError, match="already in the index"):
        index.add(_unit(1), np.array([2]))
    with pytest.raises(TansError, match=r"queries\[None, :\]"):
        index.search(_unit(1)[0], 2)
    with pytest.raises(TansError, match="k must be a positive integer"):
        index.search(_unit(1), 0)
    with pytest.raises(TansError, match="Unknown index spec 'hnws32'.*Did you mean"):
        make_index("hnws32", DIM)
    with pytest.raises(TansError, match="needs at least 64 vectors"):
        make_index("ivf16,flat", DIM).add(_unit(10), np.arange(10))
    with pytest.raises(TansError, match="No index file"):
        VectorIndex.read(tmp_path / "missing.faiss")
    (tmp_path / "junk.faiss").write_bytes(b"not an index")
    with pytest.raises(TansError, match="not a readable FAISS index"):
        VectorIndex.read(tmp_path / "junk.faiss")
    l2 = faiss.IndexIDMap(faiss.IndexFlatL2(DIM))
    faiss.write_index(l2, str(tmp_path / "l2.faiss"))
    with pytest.raises(TansError, match="L2 distance"):
        VectorIndex.read(tmp_path / "l2.faiss")


# ---------------------------------------------------------------- constraints

PARAMS = np.array([21_344, 50_000, 300_000, 1_200_000])
FLOPS = np.array([2e6, 9e6, 4e7, 3e8])
LATENCY = np.array([4.0, 1.5, 2.5, np.nan])  # last one never measured


def test_constraints_live_with_the_zoo_and_stay_importable_from_the_index():
    import tans
    import tans.index
    import tans.zoo

    assert tans.Constraints is tans.zoo.Constraints is tans.index.Constraints is Constraints
    assert tans.index.allowed_mask is allowed_mask and tans.index.require_allowed is require_allowed


def test_allowed_mask_each_constraint():
    assert allowed_mask(Constraints(), PARAMS, FLOPS, LATENCY).all()
    assert allowed_mask(Constraints(max_params=300_000), PARAMS).tolist() == [True, True, True, False]
    assert allowed_mask(Constraints(max_flops=1e7), PARAMS, FLOPS).tolist() == [True, True, False, False]
    # NaN latency does not satisfy a latency bound.
    assert allowed_mask(Constraints(max_latency_ms=100), latency_ms=LATENCY).tolist() == [True, True, True, False]
    both = Constraints(max_params=300_000, max_latency_ms=3.0)
    assert allowed_mask(both, PARAMS, FLOPS, LATENCY).tolist() == [False, True, True, False]
    assert both.describe() == "params <= 300,000, latency-ms <= 3"


def test_filtering_with_index_returns_only_satisfying_models():
    vectors = _unit(4)
    index = make_index("flat", DIM).add(vectors, np.array([10, 11, 12, 13]))
    mask = require_allowed(Constraints(max_params=100_000), PARAMS, FLOPS, LATENCY)
    _, found = index.search(vectors, 4, allowed_ids=np.array([10, 11, 12, 13])[mask])
    assert set(found[found >= 0].tolist()) == {10, 11}


def test_impossible_budget_names_smallest_value():
    msg = (
        r"No model in the zoo has at most 1,000 parameters; the smallest has 21,344\. "
        r"Raise --max-params to at least 21344\."
    )
    with pytest.raises(TansError, match=msg):
        require_allowed(Constraints(max_params=1000), PARAMS, FLOPS, LATENCY)
    with pytest.raises(TansError, match=r"at most 1 ms of latency; the fastest takes 1\.5 ms\. Raise --max-latency-ms to at least 1\.5\."):
        require_allowed(Constraints(max_latency_ms=1.0), PARAMS, FLOPS, LATENCY)
    with pytest.raises(TansError, match=r"parameters.*--max-params.*FLOPs.*--max-flops to at least 2000000"):
        require_allowed(Constraints(max_params=10, max_flops=10), PARAMS, FLOPS, LATENCY)


def test_jointly_impossible_budget_says_what_each_bound_needs():
    # params <= 30,000 admits only model 0 (4 ms); latency <= 2 admits only model 1 (50,000 params).
    with pytest.raises(TansError, match=r"together.*--max-params to at least 50000, or --max-latency-ms to at least 4"):
        require_allowed(Constraints(max_params=30_000, max_latency_ms=2.0), PARAMS, FLOPS, LATENCY)


def test_constraint_input_errors():
    with pytest.raises(TansError, match="--max-params must be a positive number, got -5"):
        Constraints(max_params=-5)
    with pytest.raises(TansError, match="--max-flops must be a number"):
        Constraints(max_flops="10M")
    with pytest.raises(TansError, match="--max-latency-ms was given but the zoo has no latency column"):
        allowed_mask(Constraints(max_latency_ms=3.0), PARAMS, FLOPS, None)
    with pytest.raises(TansError, match="same length"):
        allowed_mask(Constraints(max_params=5), PARAMS, FLOPS[:2])
    with pytest.raises(TansError, match="The zoo is empty"):
        require_allowed(Constraints(max_params=5), np.array([]))
