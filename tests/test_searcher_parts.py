"""Set encoders, losses, model inputs and the searcher net, performance predictor, LogME, meta-training's
split and metrics, the transfer table, and stage 2's combiner."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from scipy.stats import multivariate_normal

from tans._errors import TansError
from tans.searcher import (
    MetaContrastiveLoss,
    PerformancePredictor,
    list_set_encoders,
    logme_score,
    make_set_encoder,
    margin_loss,
    multi_positive_info_nce,
    positives_from_accuracy,
    predictor_loss,
)
from tans.searcher.combiner import ProbeCombiner, feature_names, fusion_features, lift
from tans.searcher.encoders import ARCH_FEATURES, STATIC_FEATURES, SearcherNet, model_inputs
from tans.searcher.experience import recipe_tag, transfer_table
from tans.searcher.logme import log_evidence
from tans.searcher.meta_train import ranking_metrics, split_by_family
from tans.searcher.track_record import Standings, TrackRecordBlend, standing_rows, standings, target_weights, track_record
from tans.space.functional import EMBEDDING_SIZE, PROBE_DIM, PROBE_IMAGES
from tans.zoo import Zoo, ZooEntry, unit_key
from tans.zoo.records import TransferRecord

torch.set_num_threads(1)

ENCODER_CONFIGS = [
    ("mean", {}),
    ("attention", {"num_blocks": 0}),
    ("attention", {"num_blocks": 2}),
    ("attention", {"num_blocks": 1, "num_inducing": 4}),
]


# ---------------------------------------------------------------- set encoders


@pytest.mark.parametrize(("name", "options"), ENCODER_CONFIGS)
def test_set_encoder_shape_norm_and_permutation_invariance(name, options):
    torch.manual_seed(0)
    encoder = make_set_encoder(name, 12, 16, **options).eval()
    x = torch.randn(3, 7, 12)
    out = encoder(x)
    assert out.shape == (3, 16)
    torch.testing.assert_close(out.norm(dim=1), torch.ones(3))
    perm = torch.randperm(7)
    torch.testing.assert_close(encoder(x[:, perm]), out, atol=1e-5, rtol=1e-5)
    # Different sets give different outputs (the encoder is not constant).
    assert (out[0] - out[1]).abs().max() > 1e-3


@pytest.mark.parametrize(("name", "options"), ENCODER_CONFIGS)
@pytest.mark.parametrize("train_mode", [False, True])
def test_padding_mask_hides_padded_elements(name, options, train_mode):
    torch.manual_seed(0)
    encoder = make_set_encoder(name, 12, 16, **options).train(train_mode)
    real = torch.randn(2, 5, 12)
    padded = torch.cat([real, 100 * torch.randn(2, 4, 12)], dim=1)  # garbage in the padding
    mask = torch.zeros(2, 9, dtype=torch.bool)
    mask[:, :5] = True
    torch.testing.assert_close(encoder(padded, mask), encoder(real), atol=1e-5, rtol=1e-5)
    # Ragged batch: set 0 has 2 elements, set 1 has 5; each matches its own unpadded encoding.
    ragged = mask.clone()
    ragged[0, 2:] = False
    out = encoder(padded, ragged)
    torch.testing.assert_close(out[0], encoder(real[:1, :2])[0], atol=1e-5, rtol=1e-5)
    # Without the mask the garbage does change the output.
    assert (encoder(padded) - encoder(real)).abs().max() > 1e-3


def test_set_encoder_errors():
    assert list_set_encoders() == ["attention", "mean"]
    with pytest.raises(TansError, match="Unknown set encoder 'atention'.*Did you mean 'attention'"):
        make_set_encoder("atention", 8)
    with pytest.raises(TansError, match="Bad option for set encoder 'mean'"):
        make_set_encoder("mean", 8, num_heads=2)
    with pytest.raises(TansError, match="divisible by num_heads"):
        make_set_encoder("attention", 8, hidden_dim=10, num_heads=4)
    encoder = make_set_encoder("attention", 8)
    with pytest.raises(TansError, match=r"shape \(batch, set_size, 8\), got \(2, 8\)"):
        encoder(torch.randn(2, 8))
    with pytest.raises(TansError, match="mask row is all False"):
        encoder(torch.randn(2, 3, 8), torch.tensor([[True, False, False], [False, False, False]]))


# ---------------------------------------------------------------- losses


def _aligned(n_datasets=4, per_dataset=3, dim=16, seed=0):
    """Unit embeddings where each dataset sits on top of its own models; positives = its models."""
    g = torch.Generator().manual_seed(seed)
    q = torch.nn.functional.normalize(torch.randn(n_datasets, dim, generator=g), dim=1)
    m = q.repeat_interleave(per_dataset, dim=0) + 0.05 * torch.randn(n_datasets * per_dataset, dim, generator=g)
    m = torch.nn.functional.normalize(m, dim=1)
    positives = torch.zeros(n_datasets, n_datasets * per_dataset, dtype=torch.bool)
    for d in range(n_datasets):
        positives[d, d * per_dataset : (d + 1) * per_dataset] = True
    return q, m, positives


@pytest.mark.parametrize("loss_fn", [multi_positive_info_nce, margin_loss])
def test_contrastive_aligned_beats_shuffled_and_has_gradient(loss_fn):
    q, m, positives = _aligned()
    aligned = loss_fn(q, m, positives)
    shuffled = loss_fn(q, m[torch.randperm(len(m), generator=torch.Generator().manual_seed(1))], positives)
    assert aligned < shuffled
    q2 = q.clone().requires_grad_(True)
    m2 = m.clone().requires_grad_(True)
    loss_fn(q2, m2.flip(0), positives).backward()
    assert q2.grad.abs().sum() > 0 and m2.grad.abs().sum() > 0


def test_info_nce_respects_multi_positive_mask():
    q, m, positives = _aligned(n_datasets=2, per_dataset=2)
    # Hand computation for the dataset->model direction with all-positive columns of dataset 0.
    logits = q @ m.T / 0.1
    log_prob = logits.log_softmax(1)
    d2m = -(log_prob[0, :2].mean() + log_prob[1, 2:].mean()) / 2
    m2d = -(logits.T.log_softmax(1)[[0, 1], 0].sum() + logits.T.log_softmax(1)[[2, 3], 1].sum()) / 4
    torch.testing.assert_close(multi_positive_info_nce(q, m, positives, temperature=0.1), (d2m + m2d) / 2)
    # The mask is what defines the positives: one more positive changes the loss.
    more = positives.clone()
    more[0, 2] = True
    assert not torch.isclose(multi_positive_info_nce(q, m, more), multi_positive_info_nce(q, m, positives))
    # Models that are nobody's positive only act as negatives (no NaN from empty rows).
    sparse = positives.clone()
    sparse[1, 3] = False
    assert torch.isfinite(multi_positive_info_nce(q, m, sparse))


def test_positives_from_accuracy_takes_best_observed():
    acc = torch.tensor([[0.9, 0.5, 0.95, 0.1], [0.2, 0.8, 0.7, 0.99]])
    observed = torch.tensor([[True, True, False, True], [True, True, True, True]])
    pos = positives_from_accuracy(acc, observed, top_k=2)
    assert pos.tolist() == [[True, True, False, False], [False, True, False, True]]


def test_margin_loss_is_a_mean_over_triples():
    q, m, positives = _aligned(n_datasets=2, per_dataset=2)
    m = m.flip(0)
    sim = (q @ m.T).tolist()
    pos = positives.tolist()

    def direction(s, p):
        hinges = [
            max(0.0, 0.2 - s[a][i] + s[a][j])
            for a in range(len(s))
            for i in range(len(s[0]))
            for j in range(len(s[0]))
            if p[a][i] and not p[a][j]
        ]
        return sum(hinges) / len(hinges)

    transpose = lambda rows: [list(col) for col in zip(*rows)]  # noqa: E731
    expected = 0.5 * (direction(sim, pos) + direction(transpose(sim), transpose(pos)))
    assert margin_loss(q, m, positives, margin=0.2).item() == pytest.approx(expected, rel=1e-5)


def test_predictor_loss_ranking_terms():
    acc = torch.tensor([[0.9, 0.6, 0.3], [0.2, 0.4, 0.8]])
    good = acc + 0.01
    reversed_ = acc.flip(1)
    for ranking in ("pairwise", "listnet"):
        total_good, mse_good, rank_good = predictor_loss(good, acc, ranking=ranking)
        total_bad, _, rank_bad = predictor_loss(reversed_, acc, ranking=ranking)
        assert rank_good < rank_bad and total_good < total_bad
        torch.testing.assert_close(mse_good, torch.tensor(1e-4))
    # Unobserved pairs are ignored: garbage there changes nothing.
    observed = torch.tensor([[True, True, False], [True, True, True]])
    messy = good.clone()
    messy[0, 2] = 0.0
    for ranking in ("pairwise", "listnet"):
        a = predictor_loss(good, acc, observed, ranking=ranking)[0]
        b = predictor_loss(messy, acc, observed, ranking=ranking)[0]
        torch.testing.assert_close(a, b)
    with pytest.raises(TansError, match="Unknown ranking loss 'lambda'"):
        predictor_loss(good, acc, ranking="lambda")


def test_predictor_loss_ranks_only_within_rank_observed():
    acc = torch.tensor([[0.9, 0.6, 0.3]])
    predicted = torch.tensor([[0.5, 0.6, 0.4]])  # wrong about the first model only
    within = torch.tensor([[False, True, True]])  # a budget that leaves it out
    total, mse, rank = predictor_loss(predicted, acc, ranking="listnet", rank_observed=within)
    perfect = torch.tensor([[0.0, 0.6, 0.3]])  # the order of the two inside is what counts
    _, _, rank_perfect = predictor_loss(perfect, acc, ranking="listnet", rank_observed=within)
    _, mse_all, rank_all = predictor_loss(predicted, acc, ranking="listnet")
    torch.testing.assert_close(mse, mse_all)  # the regression still reads every observed model
    assert rank < rank_all and rank_perfect < rank


def test_meta_contrastive_loss_terms_are_same_order():
    torch.manual_seed(0)
    n_d, n_m, dim = 8, 40, 16
    q = torch.nn.functional.normalize(torch.randn(n_d, dim), dim=1).requires_grad_(True)
    m = torch.nn.functional.normalize(torch.randn(n_m, dim), dim=1).requires_grad_(True)
    acc = torch.rand(n_d, n_m)
    positives = positives_from_accuracy(acc, top_k=3)
    predictor = PerformancePredictor(dim, hidden_dim=32)
    predicted = predictor.score_matrix(q, m)
    terms = MetaContrastiveLoss()(q, m, positives, predicted, acc)
    predictor_part = terms.total.item() - terms.contrastive
    # At initialisation the weighted predictor term is within 10x of the contrastive term.
    assert 0.1 < predictor_part / terms.contrastive < 10
    terms.total.backward()
    assert q.grad.abs().sum() > 0 and all(p.grad is not None for p in predictor.parameters())
    margin_terms = MetaContrastiveLoss(contrastive="margin", predictor_weight=0)(q, m, positives, predicted, acc)
    assert margin_terms.mse == 0 and margin_terms.total.item() == pytest.approx(margin_terms.contrastive)
    with pytest.raises(TansError, match="Unknown contrastive loss 'triplet'"):
        MetaContrastiveLoss(contrastive="triplet")
    with pytest.raises(TansError, match=r"positives must have shape \(D, M\) = \(8, 40\)"):
        multi_positive_info_nce(q, m, positives[:, :5])


# ---------------------------------------------------------------- predictor


def test_predictor_shapes_and_range():
    predictor = PerformancePredictor(8, hidden_dim=16)
    q, m = torch.randn(5, 8), torch.randn(5, 8)
    out = predictor(q, m)
    assert out.shape == (5,) and (out > 0).all() and (out < 1).all()
    assert predictor.score_matrix(torch.randn(3, 8), torch.randn(7, 8)).shape == (3, 7)
    with pytest.raises(TansError, match="width 8"):
        predictor(torch.randn(5, 4), torch.randn(5, 4))
    with pytest.raises(TansError, match="do not broadcast"):
        predictor(torch.randn(5, 8), torch.randn(3, 8))


def test_predictor_fits_tiny_regression():
    torch.manual_seed(0)
    dim = 8
    q = torch.nn.functional.normalize(torch.randn(64, dim), dim=1)
    m = torch.nn.functional.normalize(torch.randn(64, dim), dim=1)
    target = 0.5 + 0.4 * (q * m).sum(dim=1)  # accuracy grows with similarity, in [0.1, 0.9]
    predictor = PerformancePredictor(dim, hidden_dim=64)
    opt = torch.optim.Adam(predictor.parameters(), lr=3e-3)
    start = torch.mean((predictor(q, m) - target) ** 2).item()
    for _ in range(300):
        opt.zero_grad()
        loss = torch.mean((predictor(q, m) - target) ** 2)
        loss.backward()
        opt.step()
    assert loss.item() < 0.002 and loss.item() < start / 10


# ---------------------------------------------------------------- LogME


def test_logme_prefers_separating_features():
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(4), 30)
    centers = rng.standard_normal((4, 10)) * 3
    good = centers[labels] + rng.standard_normal((120, 10))
    bad = rng.standard_normal((120, 10))
    assert logme_score(good, labels) > logme_score(bad, labels) + 0.1
    # Label values need not be contiguous.
    assert logme_score(good, labels * 10 + 3) == pytest.approx(logme_score(good, labels))


@pytest.mark.parametrize(("n", "d"), [(12, 4), (5, 9)])  # n > d and d > n (rank-deficient F^T F)
def test_logme_evidence_matches_direct_gaussian_marginal(n, d):
    rng = np.random.default_rng(1)
    f = rng.standard_normal((n, d))
    labels = np.arange(n) % 2
    score, details = logme_score(f, labels, return_details=True)
    for c, (evidence_per_n, alpha, beta) in enumerate(details):
        y = (labels == c).astype(float)
        # Marginal likelihood of y under w ~ N(0, I/alpha), y = F w + N(0, I/beta), computed directly.
        direct = multivariate_normal(mean=np.zeros(n), cov=np.eye(n) / beta + f @ f.T / alpha).logpdf(y)
        assert evidence_per_n * n == pytest.approx(direct, rel=1e-6, abs=1e-6)
    assert score == pytest.approx(np.mean([e for e, _, _ in details]))


def test_logme_fixed_point_maximises_evidence():
    # Labels that depend linearly on the features: the maximum over (alpha, beta) is interior.
    rng = np.random.default_rng(1)
    n, d = 40, 4
    f = rng.standard_normal((n, d))
    labels = (f @ rng.standard_normal(d) > 0).astype(int)
    _, details = logme_score(f, labels, return_details=True)
    u, s, _ = np.linalg.svd(f, full_matrices=False)
    for c, (_, alpha, beta) in enumerate(details):
        y = (labels == c).astype(float)
        x2 = (u.T @ y) ** 2
        evidence = lambda a, b: log_evidence(a, b, s**2, x2, y @ y - x2.sum(), n, d)[0]  # noqa: E731
        at = evidence(alpha, beta)
        for a, b in [(alpha * 1.1, beta), (alpha / 1.1, beta), (alpha, beta * 1.1), (alpha, beta / 1.1)]:
            assert evidence(a, b) < at


def test_logme_errors():
    with pytest.raises(TansError, match="at least 2 classes, got 1"):
        logme_score(np.ones((4, 2)), np.zeros(4, dtype=int))
    with pytest.raises(TansError, match=r"labels must have shape \(4,\)"):
        logme_score(np.ones((4, 2)), np.zeros(3, dtype=int))
    with pytest.raises(TansError, match="labels must be integers"):
        logme_score(np.ones((4, 2)), np.array([0.0, 1.0, 0.0, 1.0]))
    with pytest.raises(TansError, match="NaN"):
        logme_score(np.full((4, 2), np.nan), np.array([0, 1, 0, 1]))


# ---------------------------------------------------------------- model inputs and the searcher net


def make_entry(i: int, *, arch: str = "mbv3_min", task: str = "digits", family: str = "digits", params: int = 100_000,
               flops: int = 10_000_000, val_acc: float = 0.6, chance: float = 0.1, embedding=None) -> ZooEntry:
    fp = f"fp-{task}"
    return ZooEntry(
        id=unit_key(arch, fp, {"epochs": 1}, i), arch=arch, task=task, task_fingerprint=fp, task_family=family,
        num_classes=10, recipe={"epochs": 1}, seed=i, val_acc=val_acc, test_acc=val_acc, chance_acc=chance,
        params=params, flops=flops, latency_ms=1.0, latency_threads=1, machine="test",
        embedding=np.arange(EMBEDDING_SIZE, dtype=np.float32) % 7 + i if embedding is None else embedding,
    )  # fmt: skip


def test_model_inputs_static_columns_and_normalised_functional():
    space = make_entry(0, params=100_000, flops=10_000_000, val_acc=0.55, chance=0.1)
    timm = make_entry(1, arch="timm/resnet18", params=1_000_000, flops=100_000_000, val_acc=0.1, chance=0.1)
    static, functional = model_inputs([space, timm])
    assert static.shape == (2, STATIC_FEATURES) and static.dtype == np.float32 and STATIC_FEATURES == ARCH_FEATURES + 4
    assert functional.shape == (2, EMBEDDING_SIZE) and functional.dtype == np.float32
    # architecture one-hot: the last column flags a model that is not of the space (zeros otherwise)
    assert static[0, ARCH_FEATURES - 1] == 0 and static[0, : ARCH_FEATURES - 1].sum() > 0
    assert static[1, ARCH_FEATURES - 1] == 1 and static[1, : ARCH_FEATURES - 1].sum() == 0
    # cost and source quality: log10(params) - 5, log10(flops) - 7, val_acc, lift over chance
    np.testing.assert_allclose(static[0, ARCH_FEATURES:], [0.0, 0.0, 0.55, 0.5], atol=1e-6)
    np.testing.assert_allclose(static[1, ARCH_FEATURES:], [1.0, 1.0, 0.1, 0.0], atol=1e-6)
    np.testing.assert_allclose(np.linalg.norm(functional.reshape(2, PROBE_IMAGES, PROBE_DIM), axis=2), 1.0, atol=1e-5)
    empty_static, empty_functional = model_inputs([])
    assert empty_static.shape == (0, STATIC_FEATURES) and empty_functional.shape == (0, EMBEDDING_SIZE)
    with pytest.raises(TansError, match=f"expected a functional embedding of {EMBEDDING_SIZE} values.*got 8"):
        model_inputs([make_entry(2, embedding=np.zeros(8, np.float32))])


@pytest.mark.parametrize("set_encoder", list_set_encoders())
def test_searcher_net_predicts_between_chance_and_one(set_encoder):
    torch.manual_seed(0)
    net = SearcherNet(12, 8, set_encoder=set_encoder, hidden_dim=16).eval()
    q = net.query(torch.randn(3, 5, 12))  # 3 datasets of 5 images
    static, functional = model_inputs([make_entry(i) for i in range(4)])
    m = net.encode_models(torch.from_numpy(static), torch.from_numpy(functional), torch.randn(4, 8))
    assert q.shape == (3, 8) and m.shape == (4, 8)
    torch.testing.assert_close(m.norm(dim=1), torch.ones(4))
    chance = torch.tensor([0.1, 0.5, 0.9])
    with torch.no_grad():
        out = net.predict(q, m, chance)
    assert out.shape == (3, 4)
    assert (out >= chance[:, None]).all() and (out <= 1).all()
    # the same dataset at two chance levels: the same lift over chance
    with torch.no_grad():
        same = net.predict(q[:1].expand(2, -1), m, torch.tensor([0.2, 0.6]))
    torch.testing.assert_close((same[0] - 0.2) / 0.8, (same[1] - 0.6) / 0.4)
    # the prediction reads the dataset: two datasets, two sets of predictions
    assert ((out[0] - 0.1) / 0.9 - (out[1] - 0.5) / 0.5).abs().max() > 1e-4


def test_model_encoder_options_need_their_inputs():
    static, functional = (torch.from_numpy(a) for a in model_inputs([make_entry(0)]))
    with_source = SearcherNet(12, 8, hidden_dim=16)
    with pytest.raises(TansError, match="uses source-task embeddings; pass them too"):
        with_source.encode_models(static, functional, None)
    without = SearcherNet(12, 8, hidden_dim=16, use_source=False, use_functional=True)
    assert without.model.source_map is None and without.model.functional_map is not None
    assert without.encode_models(static, functional).shape == (1, 8)  # no source needed


# ---------------------------------------------------------------- meta-training: split and metrics


def test_split_by_family_keeps_families_whole_and_is_seeded():
    families = ["a"] * 3 + ["b"] * 2 + ["c"] * 5 + ["d"] * 2
    train, val = split_by_family(families, 0.3, seed=3)
    assert sorted(np.concatenate([train, val]).tolist()) == list(range(len(families)))
    val_families = {families[i] for i in val}
    train_families = {families[i] for i in train}
    assert val_families and train_families and not val_families & train_families  # whole families
    assert len(val) / len(families) >= 0.3
    same = split_by_family(families, 0.3, seed=3)
    assert all(np.array_equal(x, y) for x, y in zip(same, (train, val)))
    assert len({tuple(split_by_family(families, 0.3, seed=s)[1]) for s in range(10)}) > 1  # the seed decides
    # a fraction near 1 still leaves one family to train on; one family cannot be split
    train, val = split_by_family(families, 0.99, seed=0)
    assert len({families[i] for i in train}) == 1
    assert len(split_by_family(["a"] * 4, 0.5)[1]) == 0
    assert len(split_by_family(families, 0.0)[1]) == 0
    for bad in (1.0, -0.1):
        with pytest.raises(TansError, match=r"val_fraction must be in \[0, 1\)"):
            split_by_family(families, bad)


def test_ranking_metrics_by_hand():
    accuracy = np.array([0.9, 0.8, 0.7])
    predicted = np.array([1.0, 3.0, 2.0])
    got = ranking_metrics(accuracy, predicted)
    # weightedtau(acc, predicted, rank=None): the true order's hyperbolic weights, pairs (1,2) (1,3)
    # discordant with weights 3/2, 4/3, (2,3) concordant with 5/6 -> -2 / (11/3) = -6/11
    assert got["tau"] == pytest.approx(-6 / 11)
    assert got["regret"] == pytest.approx(10.0)  # the top-ranked model (0.8) vs the best (0.9), in points
    assert got["mae"] == pytest.approx((0.1 + 2.2 + 1.3) / 3)
    perfect = ranking_metrics(accuracy, accuracy)
    assert perfect == pytest.approx({"tau": 1.0, "regret": 0.0, "mae": 0.0})
    flat = ranking_metrics(accuracy, np.full(3, 0.5))  # no order predicted: no tau, the first model is picked
    assert np.isnan(flat["tau"]) and flat["regret"] == pytest.approx(0.0) and flat["mae"] == pytest.approx(0.3)
    assert all(np.isnan(v) for v in ranking_metrics(np.array([]), np.array([])).values())


# ---------------------------------------------------------------- the transfer table

RECIPE = {"epochs": 1, "lr": 0.004, "max_train_images": 32}


def record(model_id: str, target: str, family: str, acc: float, *, seed: int = 0, recipe=None, chance: float = 0.2):
    return TransferRecord(
        model_id=model_id, target=target, target_fingerprint=f"fp-{target}", target_family=family, num_classes=5,
        recipe={**(recipe or RECIPE), "seed": seed}, seed=seed, val_acc=acc, test_acc=acc, chance_acc=chance,
        curve=(acc,), train_images=32, seconds=1.0,
    )  # fmt: skip


@pytest.fixture
def small_zoo(tmp_path):
    """Three networks: two from a digits task, one from a glyphs task (weights are placeholders)."""
    zoo = Zoo.create(tmp_path / "zoo")
    entries = [make_entry(0), make_entry(1), make_entry(2, task="glyphs", family="glyphs")]
    for e in entries:
        zoo.add(e, {"w": np.zeros(2, np.float32)})
    return zoo, entries


def test_transfer_table_means_seeds_filters_recipe_and_families(small_zoo):
    zoo, (a, b, g) = small_zoo
    zoo.add_transfers([
        record(a.id, "t1", "digits", 0.6, seed=0), record(a.id, "t1", "digits", 0.8, seed=1),  # mean 0.7
        record(g.id, "t1", "digits", 0.5),
        record(b.id, "t2", "glyphs", 0.4, chance=0.25),
        record(a.id, "t2", "glyphs", 0.9, recipe={**RECIPE, "epochs": 3}),  # another recipe: left out by default
    ])  # fmt: skip
    table = transfer_table(zoo)
    assert [e.id for e in table.entries] == zoo.ids() and table.records == 4
    assert table.names == ["t1", "t2"] and table.targets == ["fp-t1", "fp-t2"]
    assert table.families == ["digits", "glyphs"]
    assert table.recipe == recipe_tag(RECIPE) and "seed" not in table.recipe
    col = {e.id: i for i, e in enumerate(table.entries)}
    np.testing.assert_allclose(table.accuracy[0, [col[a.id], col[g.id]]], [0.7, 0.5], rtol=1e-6)
    assert np.isnan(table.accuracy[0, col[b.id]]) and np.isnan(table.accuracy[1, col[a.id]])  # never recorded
    assert table.observed.sum() == 3
    np.testing.assert_allclose(table.chance, [0.2, 0.25])
    # candidates of a target: recorded models whose source family differs from the target's
    assert table.candidates(0).tolist() == [col[g.id]]
    assert table.candidates(1).tolist() == [col[b.id]]  # b is of family "digits", the target "glyphs"
    # the other recipe, on request
    other = transfer_table(zoo, recipe=recipe_tag({**RECIPE, "epochs": 3}))
    assert other.records == 1 and other.accuracy[0, col[a.id]] == pytest.approx(0.9)
    # excluded families: their targets disappear
    digits_only = transfer_table(zoo, exclude_families=["glyphs"])
    assert digits_only.names == ["t1"] and digits_only.records == 3
    with pytest.raises(TansError, match="no transfer records outside the excluded families"):
        transfer_table(zoo, exclude_families=["glyphs", "digits"])
    with pytest.raises(TansError, match="no transfer record of the recipe"):
        transfer_table(zoo, recipe=recipe_tag({**RECIPE, "epochs": 9}))


def test_transfer_table_without_records_says_what_to_run(small_zoo):
    zoo, _ = small_zoo
    with pytest.raises(TansError, match=r"has no transfer records; .*run 'tans zoo transfer --zoo "):
        transfer_table(zoo)


def test_track_record_is_a_shrunk_mean_of_within_target_z_scores(small_zoo):
    zoo, (a, b, g) = small_zoo
    zoo.add_transfers([
        record(a.id, "t1", "digits", 0.8), record(g.id, "t1", "digits", 0.4),  # z: a +1, g -1
        record(a.id, "t2", "glyphs", 0.6), record(b.id, "t2", "glyphs", 0.2),  # z: a +1, b -1
        record(b.id, "t3", "glyphs", 0.5),  # alone on its target: no standing
    ])  # fmt: skip
    table = transfer_table(zoo)
    col = {e.id: i for i, e in enumerate(table.entries)}
    z = standings(table)
    assert z.shape == (2, 3)  # t3 has no standing to read
    assert [table.names[r] for r in standing_rows(table)] == [n for n in table.names if n != "t3"]
    raw = np.zeros(3)
    # two records of +1 with one pseudo-record at 0; one record of -1 each
    raw[[col[a.id], col[b.id], col[g.id]]] = [2 / 3, -1 / 2, -1 / 2]
    np.testing.assert_allclose(track_record(z), raw / raw.std())  # in standard deviations over the zoo
    only_t1 = track_record(standings(table, rows=[table.names.index("t1")]))  # b has no record on t1
    raw[[col[a.id], col[b.id], col[g.id]]] = [1 / 2, 0, -1 / 2]
    np.testing.assert_allclose(only_t1, raw / raw.std())
    t1 = [n for n in table.names if n != "t3"].index("t1")  # rows: the targets with a standing, in table order
    t1_first = track_record(z, weights=np.where(np.arange(2) == t1, 2.0, 0.0))
    raw[[col[a.id], col[b.id], col[g.id]]] = [2 / 3, 0, -2 / 3]  # t1's standings alone, counted twice
    np.testing.assert_allclose(t1_first, raw / raw.std())


def test_target_weights_favour_targets_whose_standings_look_like_the_profile():
    rng = np.random.default_rng(0)
    like, unlike = rng.normal(0, 1, 30), rng.normal(0, 1, 30)
    z = np.stack([like, unlike, np.full(30, np.nan)])
    z[1, :10] = np.nan  # a target need not have recorded every model
    profile = 0.05 * like + 0.3  # lifts: the same order as the first target's standings
    w = target_weights(profile, z, temperature=0.3)
    assert w.mean() == pytest.approx(1.0) and w[0] > 3 * w[1] > 0
    assert w[2] == pytest.approx(w[0] * np.exp(-1 / 0.3))  # no models in common: uncorrelated
    np.testing.assert_allclose(target_weights(profile, z, temperature=math.inf), np.ones(3))
    blend = TrackRecordBlend()
    np.testing.assert_allclose(blend.records(profile, z), track_record(z, w))
    np.testing.assert_allclose(blend.records(profile[:20], z, at=np.arange(20)), track_record(z, target_weights(profile[:20], z[:, :20])))


def test_track_record_blend_fits_its_scale_and_keeps_it_non_negative():
    rng = np.random.default_rng(0)
    predicted = rng.uniform(0.1, 0.6, (8, 40))  # the predictor's lift of 40 models on 8 targets
    records = rng.normal(0, 1, (8, 40))  # each target's track records
    cands = [np.arange(5, 40)] * 8
    truth = TrackRecordBlend(weight=2.0, scale=0.3)
    actual = [truth.apply(p[c], r[c], p.mean(), p.std()) + t / 10 + rng.normal(0, 0.002, 35)  # + target offset
              for t, (p, r, c) in enumerate(zip(predicted, records, cands))]
    blend = TrackRecordBlend(weight=2.0).fit(predicted, actual, cands, records)
    assert blend.scale == pytest.approx(0.3, abs=0.01) and blend.rows == 8 * 35
    assert TrackRecordBlend.from_dict(json.loads(json.dumps(blend.to_dict()))).to_dict() == blend.to_dict()
    old = TrackRecordBlend.from_dict({"weight": 2.0, "scale": 0.5, "rows": 3})  # saved before target weights
    assert math.isinf(old.temperature) and old.to_dict()["temperature"] is None
    # level + scale * ((predicted - level) + weight * spread * record)
    np.testing.assert_allclose(blend.apply(np.array([0.2, 0.4]), np.array([0.0, 1.0]), 0.3, 0.1),
                               [0.3 + blend.scale * -0.1, 0.3 + blend.scale * (0.1 + 0.2)])
    backwards = TrackRecordBlend(weight=2.0).fit(predicted, [-a for a in actual], cands, records)
    assert backwards.scale == 0.0  # an order that misleads is not turned around
    with pytest.raises(TansError, match="two candidates it tells apart"):
        TrackRecordBlend().fit(predicted[:, :1], [np.array([0.5])] * 8, [np.array([0])] * 8, records[:, :1])


def test_standings_by_id_fill_unknown_models_with_nan():
    memory = Standings(["a", "b", "c"], np.array([[1.0, np.nan, -1.0], [np.nan, np.nan, 0.5]]))
    got = memory.columns(["c", "new", "a"])
    np.testing.assert_array_equal(got, [[-1.0, np.nan, 1.0], [0.5, np.nan, np.nan]])
    assert memory.recorded() == ["a", "c"]


# ---------------------------------------------------------------- stage 2's combiner


def synthetic_rows(seed: int, *, targets: int = 6, k: int = 5, chance: float = 0.2):
    """Fusion rows of ``targets`` shortlists whose accuracy lift is the ncm lift (plus a little noise).

    LogME and stage 1 follow it more loosely, as they do on real records.
    """
    rng = np.random.default_rng(seed)
    X, y, groups = [], [], []
    for t in range(targets):
        ncm = rng.uniform(chance, 1.0, k)
        stage1 = np.clip(ncm + rng.normal(0, 0.1, k), chance, 0.8)
        logme = 3 * lift(ncm, chance) + rng.normal(0, 0.3, k)
        X.append(fusion_features(stage1, chance, {"logme": logme, "ncm": ncm}, chance))
        y.append(np.clip(lift(ncm, chance) + rng.normal(0, 0.02, k), 0, 1))
        groups += [f"t{t}"] * k
    return np.concatenate(X), np.concatenate(y), np.array(groups)


def test_fusion_features_columns():
    stage1, ncm, logme = np.array([0.2, 0.6, 1.0]), np.array([0.25, 0.5, 1.0]), np.array([-1.0, 0.0, 1.0])
    X = fusion_features(stage1, 0.2, {"logme": logme, "ncm": ncm}, 0.25)
    names = feature_names(("logme", "ncm"))
    assert names == ["stage1", "stage1_z", "logme_z", "ncm", "ncm_x_stage1", "ncm_z"] and X.shape == (3, len(names))
    np.testing.assert_allclose(X[:, 0], [0.0, 0.5, 1.0])  # lifts over the dataset's chance
    np.testing.assert_allclose(X[:, 3], [0.0, 1 / 3, 1.0])  # lifts over the probe sample's chance
    np.testing.assert_allclose(X[:, 4], X[:, 0] * X[:, 3])
    np.testing.assert_allclose(X[:, 2], (logme - logme.mean()) / logme.std())
    assert (fusion_features(stage1[:1], 0.2, {"ncm": ncm[:1]}, 0.25)[:, [1, 4]] == 0).all()  # one model: no z-score


def test_combiner_learns_that_a_high_ncm_lift_means_high_accuracy():
    X, y, groups = synthetic_rows(0)
    combiner = ProbeCombiner().fit(X, y, groups)
    assert set(combiner.alpha_) == {"level", "order"} and set(combiner.alpha_.values()) <= set(combiner.alphas)
    assert max(combiner.cv_mae_.values()) < 0.1 and combiner.rows_ == len(y)
    X_new, y_new, groups_new = synthetic_rows(1, targets=3)
    # predict() reads one shortlist at a time: its level comes from the shortlist's mean features
    predicted = np.concatenate([combiner.predict(X_new[groups_new == g]) for g in np.unique(groups_new)])
    truth = np.concatenate([y_new[groups_new == g] for g in np.unique(groups_new)])
    assert ((0 <= predicted) & (predicted <= 1)).all()
    assert np.abs(predicted - truth).mean() < 0.1
    assert np.corrcoef(predicted, truth)[0, 1] > 0.9
    # within one shortlist, the model with the highest ncm lift is ranked first
    first = X_new[groups_new == "t0"]
    assert np.argmax(combiner.decision(first)) == np.argmax(first[:, 3])
    # features at chance (as on images whose labels mean nothing) -> an accuracy lift near 0
    at_chance = fusion_features(np.full(4, 0.5), 0.2, {"logme": np.zeros(4), "ncm": np.full(4, 0.2)}, 0.2)
    assert combiner.predict(at_chance).max() < 0.15


def test_combiner_round_trips_through_a_dict():
    X, y, groups = synthetic_rows(0)
    combiner = ProbeCombiner().fit(X, y, groups)
    values = json.loads(json.dumps(combiner.to_dict()))  # JSON-able
    again = ProbeCombiner.from_dict(values)
    assert again.scores == combiner.scores and again.alpha_ == combiner.alpha_
    np.testing.assert_allclose(again.predict(X), combiner.predict(X))
    values["coef"]["order"] = values["coef"]["order"][:-1]
    with pytest.raises(TansError, match="does not match its probe scores"):
        ProbeCombiner.from_dict(values)


def test_combiner_errors():
    X, y, groups = synthetic_rows(0)
    with pytest.raises(TansError, match="at least 3 shortlists, 2 of them real, to fit; got 2, 2 real"):
        ProbeCombiner().fit(X, y, np.where(groups == "t0", "t0", "t1"))
    with pytest.raises(TansError, match=r"expected fusion features of shape \(n, 6\)"):
        ProbeCombiner().fit(X[:, :3], y, groups)
    bad = X.copy()
    bad[0, 0] = np.nan
    with pytest.raises(TansError, match="NaN or infinite"):
        ProbeCombiner().fit(bad, y, groups)
    with pytest.raises(TansError, match="not fitted yet"):
        ProbeCombiner().predict(X)


def test_combiner_order_is_the_fixed_blend_of_z_scores_scaled_by_real_shortlists_only():
    X, y, groups = synthetic_rows(0)
    real = ProbeCombiner().fit(X, y, groups)
    # the order's weights are the blend (stage 1 at half a probe score's weight) times one fitted scale > 0
    order = real.coef_["order"]
    assert order[0] > 0 and np.allclose(order, order[1] * np.array([0.5, 1.0, 1.0]))
    assert np.allclose(ProbeCombiner(stage1_weight=0.0).fit(X, y, groups).coef_["order"][0], 0.0)
    # null copies: same features, accuracy at chance; they move the level, never the order
    Xn = np.concatenate([X, X])
    yn = np.concatenate([y, np.zeros_like(y)])
    gn = np.concatenate([groups, np.char.add("null:", groups)])
    with_null = ProbeCombiner().fit(Xn, yn, gn, null=np.arange(len(yn)) >= len(y))
    np.testing.assert_allclose(with_null.coef_["order"], real.coef_["order"])
    assert with_null.intercept_["level"] < real.intercept_["level"]
    # scores that rank the shortlist *backwards* get a scale of 0, never a negative weight
    names = feature_names(("logme", "ncm"))
    backwards = X.copy()
    for column in ("stage1_z", "logme_z", "ncm_z"):
        backwards[:, names.index(column)] = -X[:, names.index("ncm_z")]
    assert np.allclose(ProbeCombiner().fit(backwards, y, groups).coef_["order"], 0.0)
    with pytest.raises(TansError, match="stage1_weight must be a number >= 0"):
        ProbeCombiner(stage1_weight=-1)
