"""Probe features and training-free scores: the score registry, LogME variants, sampling, a tiny zoo."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tans._errors import TansError
from tans.bench.methods import PROBE_BASELINES, MethodContext
from tans.data.dataset import Dataset
from tans.data.transforms import WorkingFormat, resize_images
from tans.searcher.logme import logme_score
from tans.searcher.probe import (
    PROBE_SCORES,
    ProbeScores,
    get_probe_score,
    list_probe_scores,
    probe_features,
    probe_sample,
    probe_scores,
)
from tans.space.registry import create_model
from tans.training.loop import to_input
from tans.zoo import Zoo, ZooEntry, unit_key

ACCURACIES = ("ncm", "knn")


def clusters(seed: int, *, classes: int = 4, per_class: int = 15, d: int = 16, spread: float = 6.0):
    """Gaussian clusters: unit noise around centres drawn with per-coordinate scale ``spread``."""
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(classes), per_class)
    centres = rng.standard_normal((classes, d)) * spread
    return centres[labels] + rng.standard_normal((len(labels), d)), labels


# ---------------------------------------------------------------------------- the registry
def test_registry_lists_and_suggests():
    assert list_probe_scores() == ["logme", "logme-reference", "ncm", "knn"]
    assert list_probe_scores("logme*") == ["logme", "logme-reference"]
    assert get_probe_score("knn") is PROBE_SCORES["knn"]
    with pytest.raises(TansError, match=r"Unknown probe score 'nmc'.*Did you mean 'ncm'"):
        get_probe_score("nmc")


@pytest.mark.parametrize("name", list_probe_scores())
def test_every_score_returns_a_finite_float(name):
    f, y = clusters(0)
    value = get_probe_score(name)(f, y)
    assert isinstance(value, float) and np.isfinite(value)
    if name in ACCURACIES:
        assert 0.0 <= value <= 1.0


@pytest.mark.parametrize("name", list_probe_scores())
def test_every_score_refuses_degenerate_input(name):
    score = get_probe_score(name)
    f, y = clusters(0)
    with pytest.raises(TansError, match="at least 2 classes, got 1"):
        score(f, np.zeros(len(y), dtype=int))
    with pytest.raises(TansError, match="at least 2 images, got 1"):
        score(f[:1], y[:1])
    bad = f.copy()
    bad[3, 2] = np.nan
    with pytest.raises(TansError, match="NaN"):
        score(bad, y)
    with pytest.raises(TansError, match=r"labels must have shape \(60,\)"):
        score(f, y[:-1])
    with pytest.raises(TansError, match="labels must be integers"):
        score(f, y.astype(float))


# ---------------------------------------------------------------------------- the accuracies
@pytest.mark.parametrize("name", ACCURACIES)
def test_accuracy_is_near_one_on_separated_clusters(name):
    f, y = clusters(1)
    assert get_probe_score(name)(f, y) >= 0.97
    # Label values need not be contiguous.
    assert get_probe_score(name)(f, y * 7 + 2) == get_probe_score(name)(f, y)


@pytest.mark.parametrize("name", ACCURACIES)
def test_accuracy_is_near_chance_on_shuffled_labels(name):
    values = []
    for seed in range(6):
        f, y = clusters(seed)
        values.append(get_probe_score(name)(f, np.random.default_rng(100 + seed).permutation(y)))
    assert abs(np.mean(values) - 0.25) < 0.1  # 4 balanced classes


def test_ncm_is_leave_one_out():
    # Two opposite images per class: with itself in, each class mean is 0 (a tie); left out, its
    # class mean is its opposite twin, farther than the other class's mean 0, so every image is wrong.
    f = np.array([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0], [0.0, -1.0]])
    assert get_probe_score("ncm")(f, np.array([0, 1, 0, 1])) == 0.0
    f2 = np.array([[1.0, 0.1], [1.0, -0.1], [-1.0, 0.1], [-1.0, -0.1]])
    assert get_probe_score("ncm")(f2, np.array([0, 0, 1, 1])) == 1.0
    # A class of one image has no mean without it: that image counts as an error.
    f3 = np.array([[1.0, 0.0], [1.0, 0.1], [1.0, -0.1], [-1.0, 0.0]])
    assert get_probe_score("ncm")(f3, np.array([0, 0, 0, 1])) == 0.75


def test_ncm_matches_a_loop():
    f, y = clusters(3, spread=1.0)
    g = f - f.mean(axis=0)
    g /= np.linalg.norm(g, axis=1, keepdims=True)
    hits = 0
    for i in range(len(y)):
        others = np.arange(len(y)) != i
        means = np.stack([g[others & (y == c)].mean(axis=0) for c in range(4)])
        hits += int(np.argmin(((g[i] - means) ** 2).sum(axis=1)) == y[i])
    assert get_probe_score("ncm")(f, y) == pytest.approx(hits / len(y))


def test_knn_breaks_ties_by_the_nearest_neighbour():
    # Image 0's five neighbours: classes 1 (nearest), 2, 1, 2, 3 -> a 2-2 tie that class 1 wins.
    angles = np.array([0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 3.0, 3.1, 3.2])
    f = np.stack([np.cos(angles), np.sin(angles)], axis=1)
    y = np.array([1, 1, 2, 1, 2, 3, 0, 0, 0])
    value = get_probe_score("knn")(f, y)
    manual = []
    sim = f @ f.T
    np.fill_diagonal(sim, -np.inf)
    for i in range(len(y)):
        near = np.argsort(-sim[i], kind="stable")[:5]
        votes = np.bincount(y[near], minlength=4)
        tied = np.flatnonzero(votes == votes.max())
        manual.append(next(y[j] for j in near if y[j] in tied) == y[i])
    assert value == pytest.approx(np.mean(manual))
    assert manual[0]  # the tie at image 0 went to the nearest class


# ---------------------------------------------------------------------------- LogME variants
@pytest.mark.parametrize("name", ["logme", "logme-reference"])
def test_logme_prefers_separable_features(name):
    f, y = clusters(2, spread=3.0)
    shuffled = np.random.default_rng(0).permutation(y)
    assert get_probe_score(name)(f, y) > get_probe_score(name)(f, shuffled) + 0.1


def test_logme_variants_agree_when_n_exceeds_d_and_differ_otherwise():
    f, y = clusters(4, per_class=20, d=10)  # n = 80 > d = 10
    assert logme_score(f, y, variant="reference") == pytest.approx(logme_score(f, y), abs=1e-4)
    rng = np.random.default_rng(5)
    wide = np.hstack([f, rng.standard_normal((80, 150))])  # d = 160 > n = 80
    exact, reference = logme_score(wide, y), logme_score(wide, y, variant="reference")
    assert reference > exact + 0.1  # the omitted (d - n) log(alpha) / 2 term


def test_logme_refuses_an_unknown_variant():
    f, y = clusters(0)
    with pytest.raises(TansError, match=r"Unknown LogME variant 'refrence'.*Did you mean 'reference'"):
        logme_score(f, y, variant="refrence")


def _reference_logme(f: np.ndarray, y: np.ndarray) -> float:
    """The reference fixed-point LogME (thuml/LogME ``LogME.fit``) written out for classification."""
    n, d = f.shape
    if n > d:  # rank-truncated SVD through the eigenvalues of F^T F
        eig, vecs = np.linalg.eigh(f.T @ f)
        s = np.sqrt(np.clip(eig, 0.0, None))
        kept = s > 1e-10
        s, vh = s[kept], vecs[:, kept].T
        u = f @ vh.T / s
    else:
        u, s, vh = np.linalg.svd(f, full_matrices=False)
    sigma = s**2
    per_class = []
    for c in range(int(y.max()) + 1):
        target = (y == c).astype(np.float64)
        x2 = (u.T @ target) ** 2
        rest = target @ target - x2.sum()
        alpha = beta = 1.0
        for _ in range(11):
            t = alpha / beta
            gamma = np.sum(sigma / (sigma + t))
            m2 = np.sum(sigma * x2 / (t + sigma) ** 2)
            res2 = np.sum(x2 / (1 + sigma / t) ** 2) + rest
            alpha, beta = gamma / (m2 + 1e-5), (n - gamma) / (res2 + 1e-5)
            if abs(alpha / beta - t) / t <= 1e-3:
                break
        evidence = (
            d / 2 * np.log(alpha)
            + n / 2 * np.log(beta)
            - 0.5 * np.sum(np.log(alpha + beta * sigma))
            - beta / 2 * res2
            - alpha / 2 * m2
            - n / 2 * np.log(2 * np.pi)
        )
        per_class.append(evidence / n)
    return float(np.mean(per_class))


@pytest.mark.parametrize(("per_class", "d"), [(30, 12), (5, 40)])  # n > d and d > n
def test_reference_variant_matches_the_reference_algorithm(per_class, d):
    f, y = clusters(6, classes=3, per_class=per_class, d=d, spread=2.0)
    assert logme_score(f, y, variant="reference") == pytest.approx(_reference_logme(f, y), abs=1e-4)


# ---------------------------------------------------------------------------- sampling
def indexed_dataset(*, split: bool = True) -> Dataset:
    """90 grey 8x8 images whose every pixel is the image's index; 3 classes; a fixed split."""
    n = 90
    images = np.broadcast_to(np.arange(n, dtype=np.uint8)[:, None, None, None], (n, 8, 8, 1)).copy()
    labels = np.arange(n) % 3
    indices = None
    if split:
        order = np.random.default_rng(0).permutation(n)
        indices = {"train": np.sort(order[:30]), "val": np.sort(order[30:60]), "test": np.sort(order[60:])}
    return Dataset(images, labels, ("a", "b", "c"), name="indexed", split_indices=indices)


@pytest.mark.parametrize("split", [True, False])
def test_probe_sample_draws_the_training_split_only_in_the_working_format(split):
    dataset = indexed_dataset(split=split)
    train = set(dataset.splits()["train"].tolist())
    for seed in range(3):
        images, labels = probe_sample(dataset, WorkingFormat(16, 3), per_class=50, seed=seed)
        assert images.shape[1:] == (16, 16, 3) and images.dtype == np.uint8
        drawn = images[:, 0, 0, 0].astype(int)  # a constant image stays constant when resized
        assert (images == drawn[:, None, None, None]).all()
        assert set(drawn.tolist()) == train  # every training image, nothing else
        np.testing.assert_array_equal(labels, dataset.labels[drawn])
    images, labels = probe_sample(dataset, WorkingFormat(16, 1), per_class=2, seed=1)
    assert images.shape == (6, 16, 16, 1) and np.bincount(labels).tolist() == [2, 2, 2]
    assert set(images[:, 0, 0, 0].tolist()) <= train


def test_probe_sample_errors():
    dataset = indexed_dataset()
    with pytest.raises(TansError, match="per_class must be a positive integer, got 0"):
        probe_sample(dataset, WorkingFormat(), per_class=0)
    empty = dict(dataset.split_indices, train=np.array([], dtype=np.int64))
    no_train = Dataset(dataset.images, dataset.labels, dataset.class_names, name="no-train", split_indices=empty)
    with pytest.raises(TansError, match="'no-train' has no training images"):
        probe_sample(no_train, WorkingFormat(), per_class=2)


# ---------------------------------------------------------------------------- a tiny zoo
ARCHS = ("mbv3_min", "mbv3_small")


@pytest.fixture(scope="module")
def zoo(tmp_path_factory):
    """Two untrained networks of 3 classes in a zoo whose working format is 16x16 grey."""
    torch.set_num_threads(1)
    zoo = Zoo.create(tmp_path_factory.mktemp("zoo") / "zoo")
    zoo.record_working_format(WorkingFormat(16, 1))
    for i, arch in enumerate(ARCHS):
        torch.manual_seed(i)
        model = create_model(arch, num_classes=3)
        entry = ZooEntry(
            id=unit_key(arch, "fp", {"epochs": 0}, 0), arch=arch, task="t", task_fingerprint="fp",
            task_family="f", num_classes=3, recipe={"epochs": 0}, seed=0, val_acc=0.5, test_acc=0.5,
            chance_acc=1 / 3, params=sum(p.numel() for p in model.parameters()), flops=1, latency_ms=1.0,
            latency_threads=1, machine="test", embedding=np.zeros(4, np.float32),
        )
        zoo.add(entry, model.state_dict())
    return zoo


@pytest.fixture(scope="module")
def rgb_dataset():
    """3 classes of 12x12 RGB images, each class a different brightness, with noise."""
    rng = np.random.default_rng(0)
    labels = np.arange(60) % 3
    images = np.clip(labels[:, None, None, None] * 80 + rng.integers(0, 60, (60, 12, 12, 3)), 0, 255).astype(np.uint8)
    return Dataset(images, labels, ("dark", "mid", "light"), name="brightness")


def test_probe_features_gives_finite_features_per_entry_in_the_zoo_format(zoo, rgb_dataset):
    ids = [e.id for e in zoo.entries()]
    images, _ = probe_sample(rgb_dataset, zoo.working_format, per_class=4)
    assert images.shape == (12, 16, 16, 1)
    got = list(probe_features(zoo, ids, images, device="cpu", batch_size=5))  # batches of 5, 5, 2
    assert [i for i, _ in got] == ids
    for entry_id, feats in got:
        entry = zoo.get(entry_id)
        assert feats.dtype == np.float64 and feats.shape[0] == 12 and np.isfinite(feats).all()
        model = create_model(entry.arch, num_classes=3)
        model.load_state_dict(zoo.load_state_dict(entry_id))
        model.eval()
        with torch.no_grad():
            x = to_input(images)  # (12, 3, 16, 16): the zoo's 16x16 grey, repeated to RGB
            direct = model.forward_head(model.forward_features(x), pre_logits=True).reshape(12, -1)
        np.testing.assert_allclose(feats, direct.double().numpy(), rtol=1e-5, atol=1e-5)
    # Images not in the zoo's format are resized to it, as probe_sample would.
    raw = rgb_dataset.images[:12]
    (_, from_raw), = probe_features(zoo, ids[:1], raw, device="cpu")
    (_, from_fmt), = probe_features(zoo, ids[:1], resize_images(raw, 16, 1), device="cpu")
    np.testing.assert_array_equal(from_raw, from_fmt)


def test_probe_features_errors(zoo):
    with pytest.raises(TansError, match=r"Expected uint8 images \(n, h, w, 1 or 3\), got float64"):
        next(probe_features(zoo, ["x"], np.zeros((2, 16, 16, 1))))
    with pytest.raises(TansError, match="batch_size must be at least 1"):
        next(probe_features(zoo, ["x"], np.zeros((2, 16, 16, 1), np.uint8), batch_size=0))
    entry_id = zoo.entries()[0].id
    with pytest.raises(TansError, match="Did you mean"):
        next(probe_features(zoo, [entry_id[:-1]], np.zeros((2, 16, 16, 1), np.uint8)))


def test_probe_scores_end_to_end(zoo, rgb_dataset):
    ids = [e.id for e in zoo.entries()]
    result = probe_scores(zoo.path, ids, rgb_dataset, per_class=5, scores=list_probe_scores(), device="cpu")
    assert isinstance(result, ProbeScores) and result.ids == ids
    assert set(result.scores) == set(list_probe_scores())
    assert all(v.shape == (2,) and np.isfinite(v).all() for v in result.scores.values())
    assert all(((0 <= result.scores[n]) & (result.scores[n] <= 1)).all() for n in ACCURACIES)
    assert result.images == 15 and result.chance == pytest.approx(1 / 3)
    assert result.seconds_per_entry.shape == (2,) and (result.seconds_per_entry > 0).all()
    assert result.shared_seconds >= 0
    with pytest.raises(TansError, match=r"Unknown probe score 'logmee'.*Did you mean 'logme'"):
        probe_scores(zoo, ids, rgb_dataset, scores=("logmee",))
    cls = rgb_dataset.labels
    split = {"train": np.flatnonzero(cls == 0), "val": np.flatnonzero(cls == 1), "test": np.flatnonzero(cls == 2)}
    one_class = Dataset(rgb_dataset.images, cls, rgb_dataset.class_names, name="one", split_indices=split)
    with pytest.raises(TansError, match="'one' has 1 class in its training split"):
        probe_scores(zoo, ids, one_class, per_class=3)


def test_bench_probe_baselines_use_the_probe_path(zoo, rgb_dataset):
    ctx = MethodContext(dataset=rgb_dataset, zoo=zoo, logme_per_class=5)
    ids = [e.id for e in ctx.entries]
    found = ctx.probes()
    for name in PROBE_BASELINES:
        expected = probe_scores(zoo, ids, rgb_dataset, per_class=5, scores=(name,))
        np.testing.assert_allclose(found.scores[name], expected.scores[name], rtol=1e-6)
    everything = np.arange(len(ids))
    # a baseline is charged the shared sample, every forward pass and its own score, nothing else
    assert ctx.probe_seconds("logme", everything) == pytest.approx(
        found.shared_seconds + found.feature_seconds.sum() + found.score_seconds["logme"].sum()
    )
    assert ctx.probe_seconds("logme", everything[:1]) < ctx.probe_seconds("logme", everything)
