"""LogME: a training-free score of how well features suit a labelled dataset.

You, Liu, Wang, Long, "LogME: Practical Assessment of Pre-trained Models for Transfer Learning",
ICML 2021. For each class ``c`` the one-vs-rest target ``y = [label == c]`` is modelled as a
Bayesian linear regression on the features ``F`` (n, d): ``w ~ N(0, I/alpha)``,
``y | F, w ~ N(F w, I/beta)``. The log evidence

    log p(y | F) = d/2 log(alpha) + n/2 log(beta) - n/2 log(2 pi)
                   - beta/2 ||F m - y||^2 - alpha/2 ||m||^2 - 1/2 log|A|,
    A = alpha I + beta F^T F,   m = beta A^-1 F^T y,

is maximised over (alpha, beta) by MacKay's fixed-point iteration
``gamma = sum sigma_i / (sigma_i + alpha/beta)``, ``alpha = gamma / ||m||^2``,
``beta = (n - gamma) / ||F m - y||^2``, where ``sigma_i`` are the eigenvalues of ``F^T F``. As in the
authors' reference code, one SVD of ``F`` makes every iteration O(min(n, d)): with ``F = U S V^T``
and ``x = U^T y`` all the quantities above are sums over the singular values. The score is the
maximised evidence divided by ``n``, averaged over classes (higher is better).

Two variants, chosen by ``logme_score(..., variant=)``:

- ``"exact"`` (default): ``log|A|`` counts the ``d - r`` zero eigenvalues of ``F^T F`` (each
  contributes ``log alpha``) when ``d > n``, so the value is the exact maximised evidence (the
  ICML paper's ``each_evidence``, which decomposes the ``d x d`` matrix ``F^T F``, computes the same).
- ``"reference"``: what ``LogME.fit`` of the authors' published code (thuml/LogME, ``LogME.py``,
  ``_fit = _fit_fixed_point``) returns. Its ``log|A|`` sums over the ``min(n, d)`` singular values
  only (for ``n > d``, those above ``1e-10``), so when ``d > n`` it omits ``(d - n) log(alpha) / 2``
  and is larger than the exact evidence. It also stops after 11 iterations at a relative tolerance of
  ``1e-3`` and scores with the ``||m||^2`` and ``||F m - y||^2`` of the previous ``(alpha, beta)``
  (second-order differences). For ``n > d`` and full-rank features both variants agree to about
  ``1e-5``; use ``"reference"`` to compare with numbers published with that code.
"""

from __future__ import annotations

import numpy as np

from tans._errors import TansError, lookup

__all__ = ["LOGME_VARIANTS", "logme_score", "log_evidence"]

LOGME_VARIANTS = ("exact", "reference")
_EPS = 1e-5  # as in the reference code: keeps alpha and beta finite on degenerate targets
_DEFAULTS = {"exact": (100, 1e-6), "reference": (11, 1e-3)}  # (max_iter, tol) per variant
_RANK_TOL = 1e-10  # the reference code drops singular values below this when n > d


def log_evidence(
    alpha: float, beta: float, sigma: np.ndarray, x2: np.ndarray, res_y2: float, n: int, d: int
) -> tuple[float, float, float]:
    """Log evidence at (alpha, beta) from the SVD quantities.

    Parameters
    ----------
    alpha, beta : float
        Prior precision of the weights and noise precision.
    sigma : np.ndarray
        ``(r,)`` squared singular values of ``F``.
    x2 : np.ndarray
        ``(r,)`` squared projections ``(U^T y)^2``.
    res_y2 : float
        ``||y||^2 - sum(x2)``: the part of ``y`` outside the column space of ``F``.
    n, d : int
        Samples and feature dimension.

    Returns
    -------
    evidence : float
        ``log p(y | F, alpha, beta)`` (not divided by ``n``).
    m2 : float
        ``||m||^2``.
    res2 : float
        ``||F m - y||^2``.
    """
    t = alpha / beta
    m2 = float((sigma * x2 / (sigma + t) ** 2).sum())
    res2 = float((x2 * (t / (sigma + t)) ** 2).sum() + res_y2)
    log_det = float(np.log(alpha + beta * sigma).sum() + (d - sigma.size) * np.log(alpha))
    evidence = (
        d / 2.0 * np.log(alpha)
        + n / 2.0 * np.log(beta)
        - n / 2.0 * np.log(2 * np.pi)
        - beta / 2.0 * res2
        - alpha / 2.0 * m2
        - 0.5 * log_det
    )
    return float(evidence), m2, res2


def _maximise(sigma: np.ndarray, x: np.ndarray, y2: float, n: int, d: int, *, max_iter: int, tol: float):
    x2 = x**2
    res_y2 = max(y2 - float(x2.sum()), 0.0)
    alpha, beta = 1.0, 1.0
    for _ in range(max_iter):
        t = alpha / beta
        gamma = float((sigma / (sigma + t)).sum())
        _, m2, res2 = log_evidence(alpha, beta, sigma, x2, res_y2, n, d)
        alpha = gamma / (m2 + _EPS)
        beta = (n - gamma) / (res2 + _EPS)
        if abs(alpha / beta - t) / t <= tol:
            break
    evidence, _, _ = log_evidence(alpha, beta, sigma, x2, res_y2, n, d)
    return evidence, alpha, beta


def _maximise_reference(sigma: np.ndarray, x: np.ndarray, y2: float, n: int, d: int, *, max_iter: int, tol: float):
    # The loop of the reference `_fit_fixed_point`: the evidence uses the new (alpha, beta) with the
    # previous iteration's m2 and res2, and log|A| runs over the kept singular values only.
    x2 = x**2
    res_y2 = y2 - float(x2.sum())
    alpha, beta = 1.0, 1.0
    for _ in range(max_iter):
        t = alpha / beta
        gamma = float((sigma / (sigma + t)).sum())
        m2 = float((sigma * x2 / (sigma + t) ** 2).sum())
        res2 = float((x2 * (t / (sigma + t)) ** 2).sum() + res_y2)
        alpha = gamma / (m2 + _EPS)
        beta = (n - gamma) / (res2 + _EPS)
        if abs(alpha / beta - t) / t <= tol:
            break
    evidence = (
        d / 2.0 * np.log(alpha)
        + n / 2.0 * np.log(beta)
        - 0.5 * float(np.log(alpha + beta * sigma).sum())
        - beta / 2.0 * res2
        - alpha / 2.0 * m2
        - n / 2.0 * np.log(2 * np.pi)
    )
    return float(evidence), alpha, beta


def logme_score(
    features: np.ndarray,
    labels: np.ndarray,
    *,
    variant: str = "exact",
    max_iter: int | None = None,
    tol: float | None = None,
    return_details: bool = False,
):
    """LogME of ``features`` for the classification task given by ``labels``.

    Parameters
    ----------
    features : np.ndarray
        ``(n, d)`` features of the target images from one candidate model.
    labels : np.ndarray
        ``(n,)`` integer class labels (any integer values; at least 2 classes).
    variant : {"exact", "reference"}
        The exact evidence, or the value of the authors' reference code (see the module docstring).
    max_iter : int, optional
        Fixed-point iterations per class (it usually converges in 2-5); default 100 for
        ``"exact"``, 11 (the reference code's) for ``"reference"``.
    tol : float, optional
        Stop when ``alpha / beta`` changes by less than this fraction; default ``1e-6`` for
        ``"exact"``, ``1e-3`` for ``"reference"``.
    return_details : bool
        Also return the per-class ``(evidence / n, alpha, beta)``.

    Returns
    -------
    float
        Mean over classes of the maximised log evidence per sample (higher is better), or
        ``(score, details)`` when ``return_details``.

    Raises
    ------
    TansError
        On an unknown variant, mismatched shapes, non-finite features, non-integer labels or fewer
        than 2 classes.
    """
    default_iter, default_tol = lookup("LogME variant", variant, _DEFAULTS)
    max_iter = default_iter if max_iter is None else max_iter
    tol = default_tol if tol is None else tol
    f = np.asarray(features)
    y = np.asarray(labels)
    if f.ndim != 2:
        raise TansError(f"features must have shape (n, d), got {f.shape}.")
    if y.ndim != 1 or y.shape[0] != f.shape[0]:
        raise TansError(f"labels must have shape ({f.shape[0]},) to match the features, got {y.shape}.")
    if not np.issubdtype(f.dtype, np.number):
        raise TansError(f"features must be numeric, got dtype {f.dtype}.")
    if y.size and not np.issubdtype(y.dtype, np.integer):
        raise TansError(f"labels must be integers, got dtype {y.dtype}.")
    f = f.astype(np.float64)
    if not np.isfinite(f).all():
        raise TansError("features contain NaN or infinite values.")
    classes = np.unique(y)
    if classes.size < 2:
        raise TansError(f"LogME needs at least 2 classes, got {classes.size}.")
    n, d = f.shape

    u, s, _ = np.linalg.svd(f, full_matrices=False)  # u (n, r), s (r,), r = min(n, d)
    maximise = _maximise
    if variant == "reference":
        maximise = _maximise_reference
        if n > d:  # the reference's truncated SVD keeps the rank's singular values only
            keep = s > _RANK_TOL
            u, s = u[:, keep], s[keep]
    sigma = s**2
    details = []
    for c in classes:
        target = (y == c).astype(np.float64)
        evidence, alpha, beta = maximise(sigma, u.T @ target, float(target @ target), n, d, max_iter=max_iter, tol=tol)
        details.append((evidence / n, alpha, beta))
    score = float(np.mean([e for e, _, _ in details]))
    return (score, details) if return_details else score
