"""Set encoders, losses, performance predictor and LogME."""

from __future__ import annotations

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
from tans.searcher.logme import log_evidence

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
