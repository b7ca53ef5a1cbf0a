"""Training-free transferability scores of zoo networks on a new dataset, from one probe sample.

One path computes every such score: :func:`probe_sample` draws a class-balanced sample of the
dataset's *training* split and resizes it once to the zoo's working format; :func:`probe_features`
runs each candidate network over it and yields its pre-logit features; a score from
:data:`PROBE_SCORES` maps ``(features, labels)`` to one number, higher is better;
:func:`probe_scores` does all three for a list of entries and times them.

Registered scores:

- ``"logme"``: LogME, the exact maximised evidence (:func:`tans.searcher.logme.logme_score`);
- ``"logme-reference"``: LogME as the authors' reference code computes it (larger than the exact
  evidence when the feature width exceeds the sample size; see :mod:`tans.searcher.logme`);
- ``"ncm"``: leave-one-out accuracy of the nearest class mean on centred, L2-normalised features;
- ``"knn"``: leave-one-out accuracy of a cosine k-nearest-neighbour vote (``k = min(5, n - 1)``).
"""

from __future__ import annotations

import fnmatch
import os
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from tans._errors import TansError, lookup
from tans.data.dataset import Dataset
from tans.data.transforms import WorkingFormat, resize_images
from tans.progress import Progress, emit
from tans.searcher.features import query_sample
from tans.searcher.logme import logme_score
from tans.training.loop import default_device, to_input
from tans.zoo.store import Zoo

__all__ = [
    "PROBE_SCORES",
    "ProbeScores",
    "get_probe_score",
    "list_probe_scores",
    "probe_features",
    "probe_sample",
    "probe_scores",
]

ProbeScore = Callable[[np.ndarray, np.ndarray], float]

#: Score name -> ``score(features (n, d), labels (n,)) -> float``, higher is better.
PROBE_SCORES: dict[str, ProbeScore] = {}

_KNN_K = 5  # neighbours of the k-NN vote (fewer when the sample is smaller)


def _register(name: str) -> Callable[[ProbeScore], ProbeScore]:
    def add(fn: ProbeScore) -> ProbeScore:
        if name in PROBE_SCORES:
            raise TansError(f"A probe score named '{name}' is already registered.")
        PROBE_SCORES[name] = fn
        return fn

    return add


def list_probe_scores(pattern: str = "*") -> list[str]:
    """Registered score names matching a shell-style wildcard ``pattern`` (e.g. ``"logme*"``)."""
    return [name for name in PROBE_SCORES if fnmatch.fnmatch(name, pattern)]


def get_probe_score(name: str) -> ProbeScore:
    """The score function of a name; an unknown name raises :class:`TansError` suggesting close names."""
    return lookup("probe score", name, PROBE_SCORES)


# --------------------------------------------------------------------------------- the scores
def _check(features: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Validated float64 features, labels as class positions 0..C-1, and the class sizes."""
    f = np.asarray(features)
    y = np.asarray(labels)
    if f.ndim != 2 or not np.issubdtype(f.dtype, np.number):
        raise TansError(f"features must be a numeric array (n, d), got {f.dtype} {f.shape}.")
    if y.ndim != 1 or y.shape[0] != f.shape[0]:
        raise TansError(f"labels must have shape ({f.shape[0]},) to match the features, got {y.shape}.")
    if y.size and not np.issubdtype(y.dtype, np.integer):
        raise TansError(f"labels must be integers, got dtype {y.dtype}.")
    if f.shape[0] < 2:
        raise TansError(f"A probe score needs at least 2 images, got {f.shape[0]}; sample more images per class.")
    f = f.astype(np.float64)
    if not np.isfinite(f).all():
        raise TansError("features contain NaN or infinite values; check the network's weights.")
    _, y, counts = np.unique(y, return_inverse=True, return_counts=True)
    if counts.size < 2:
        raise TansError(f"A probe score needs at least 2 classes, got {counts.size}.")
    return f, y.reshape(-1), counts


def _unit_rows(f: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(f, axis=1, keepdims=True)
    return f / np.maximum(norms, 1e-12)  # a zero row stays zero


@_register("logme")
def logme(features: np.ndarray, labels: np.ndarray) -> float:
    """LogME, the exact maximised evidence per sample averaged over classes."""
    f, y, _ = _check(features, labels)
    return logme_score(f, y)


@_register("logme-reference")
def logme_reference(features: np.ndarray, labels: np.ndarray) -> float:
    """LogME as the authors' reference ``LogME.fit`` computes it."""
    f, y, _ = _check(features, labels)
    return logme_score(f, y, variant="reference")


@_register("ncm")
def ncm(features: np.ndarray, labels: np.ndarray) -> float:
    """Leave-one-out nearest-class-mean accuracy on centred, L2-normalised features.

    Each image is compared (Euclidean distance) with every class mean, its own class's mean
    computed without it; an image alone in its class counts as an error. O(n d C).
    """
    f, y, counts = _check(features, labels)
    f = _unit_rows(f - f.mean(axis=0))
    n, num_classes = len(y), counts.size
    sums = np.zeros((num_classes, f.shape[1]))
    np.add.at(sums, y, f)  # (C, d)
    means = sums / counts[:, None]
    sq = (f**2).sum(axis=1)  # (n,)
    dot_sums = f @ sums.T  # (n, C)
    dist = sq[:, None] - 2.0 * dot_sums / counts + (means**2).sum(axis=1)  # (n, C)
    rows = np.arange(n)
    own, k = dot_sums[rows, y], counts[y] - 1.0  # f_i . S_y and the size of the class without i
    with np.errstate(divide="ignore", invalid="ignore"):
        # ||f_i - (S_y - f_i) / k||^2 expanded, so nothing of size (n, d) is formed per class
        loo = sq - 2.0 * (own - sq) / k + ((sums[y] ** 2).sum(axis=1) - 2.0 * own + sq) / k**2
    dist[rows, y] = np.where(k > 0, loo, np.inf)
    return float((dist.argmin(axis=1) == y).mean())


@_register("knn")
def knn(features: np.ndarray, labels: np.ndarray) -> float:
    """Leave-one-out k-nearest-neighbour accuracy, cosine similarity, ``k = min(5, n - 1)``.

    Majority vote of the ``k`` most similar other images; a tie goes to the tied class whose
    member is nearest.
    """
    f, y, counts = _check(features, labels)
    f = _unit_rows(f)
    k = min(_KNN_K, len(y) - 1)
    sim = f @ f.T  # (n, n)
    np.fill_diagonal(sim, -np.inf)
    near = np.argpartition(-sim, k - 1, axis=1)[:, :k]  # (n, k), unordered
    near = np.take_along_axis(near, np.argsort(-np.take_along_axis(sim, near, axis=1), axis=1, kind="stable"), axis=1)
    votes_for = y[near]  # (n, k), nearest first
    onehot = votes_for[:, :, None] == np.arange(counts.size)  # (n, k, C)
    votes = onehot.sum(axis=1)  # (n, C)
    first = np.where(onehot.any(axis=1), onehot.argmax(axis=1), k)  # position of each class's nearest member
    pred = (votes * (k + 1) + (k - first)).argmax(axis=1)  # votes first, then nearness
    return float((pred == y).mean())


# ------------------------------------------------------------------------- sample and features
def probe_sample(dataset: Dataset, fmt: WorkingFormat, *, per_class: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A class-balanced sample of the dataset's training split, in the zoo's working format.

    Parameters
    ----------
    dataset : Dataset
        The target dataset; only its training split is drawn from.
    fmt : WorkingFormat
        The zoo's working format (:attr:`tans.zoo.Zoo.working_format`).
    per_class : int
        Images per class (a class with fewer contributes all it has).
    seed : int
        Seed of the draw.

    Returns
    -------
    images : np.ndarray
        ``(n, fmt.size, fmt.size, fmt.channels)`` uint8, grouped by class.
    labels : np.ndarray
        ``(n,)`` the dataset's class indices.

    Raises
    ------
    TansError
        If ``per_class < 1`` or the dataset has no training images.
    """
    if not isinstance(per_class, (int, np.integer)) or per_class < 1:
        raise TansError(f"per_class must be a positive integer, got {per_class!r}.")
    if dataset.splits()["train"].size == 0:
        raise TansError(f"Dataset '{dataset.name}' has no training images to probe with; give it a train split.")
    sample = query_sample(dataset, per_class=int(per_class), seed=seed, split="train")
    images = sample.images
    if images.shape[1:] != (fmt.size, fmt.size, fmt.channels):
        images = resize_images(images, fmt.size, fmt.channels)
    return images, sample.labels


@torch.no_grad()
def probe_features(
    zoo: Zoo | str | os.PathLike[str],
    entry_ids: Sequence[str],
    images: np.ndarray,
    *,
    device: torch.device | str | None = None,
    batch_size: int = 256,
) -> Iterator[tuple[str, np.ndarray]]:
    """Pre-logit features of ``images`` under each entry's network, one entry at a time.

    Parameters
    ----------
    zoo : Zoo or path
        The zoo holding the entries.
    entry_ids : sequence of str
        Entries to run (unknown ids raise when reached, with close ids suggested).
    images : np.ndarray
        ``(n, h, w, c)`` uint8, normally from :func:`probe_sample`; resized to the zoo's working
        format when they are not in it.
    device : torch.device or str, optional
        Where to run; CUDA when present by default.
    batch_size : int
        Images per forward pass.

    Yields
    ------
    (str, np.ndarray)
        The entry id and its ``(n, d)`` float64 features
        (``forward_head(forward_features(x), pre_logits=True)``, flattened), eval mode.

    Raises
    ------
    TansError
        On images that are not uint8 ``(n, h, w, 1 or 3)``, ``batch_size < 1``, or an entry that
        cannot be loaded.
    """
    zoo = zoo if isinstance(zoo, Zoo) else Zoo.open(zoo)
    if not isinstance(images, np.ndarray) or images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] not in (1, 3):
        got = f"{getattr(images, 'dtype', type(images).__name__)} {getattr(images, 'shape', '')}".strip()
        raise TansError(f"Expected uint8 images (n, h, w, 1 or 3), got {got}; use probe_sample to draw them.")
    if batch_size < 1:
        raise TansError(f"batch_size must be at least 1, got {batch_size}.")
    fmt = zoo.working_format
    if images.shape[1:] != (fmt.size, fmt.size, fmt.channels):
        images = resize_images(images, fmt.size, fmt.channels)
    device = torch.device(device) if device is not None else default_device()
    for entry_id in entry_ids:
        model = zoo.load_model(entry_id).to(device).eval()
        out = []
        for start in range(0, len(images), batch_size):
            x = to_input(images[start : start + batch_size], device)  # (b, 3, s, s)
            feats = model.forward_head(model.forward_features(x), pre_logits=True)
            out.append(feats.reshape(len(x), -1).double().cpu())  # (b, d)
        del model
        yield entry_id, (torch.cat(out).numpy() if out else np.zeros((0, 0)))


# ------------------------------------------------------------------------------- all together
@dataclass(frozen=True)
class ProbeScores:
    """Probe scores of zoo entries on one dataset, with their cost."""

    # the scores, aligned with ids
    ids: list[str]
    scores: dict[str, np.ndarray]  # score name -> (n,) values, higher is better
    # cost
    seconds_per_entry: np.ndarray  # (n,) loading, forward pass and every score of one entry
    feature_seconds: np.ndarray  # (n,) loading and forward pass alone
    score_seconds: dict[str, np.ndarray]  # score name -> (n,) seconds of that score alone
    shared_seconds: float  # sampling and resizing, paid once
    # the probe sample
    images: int
    chance: float  # majority-class fraction: the accuracy scores' floor


def probe_scores(
    zoo: Zoo | str | os.PathLike[str],
    entry_ids: Sequence[str],
    dataset: Dataset,
    *,
    per_class: int = 20,
    seed: int = 0,
    scores: Sequence[str] = ("logme", "ncm"),
    device: torch.device | str | None = None,
    progress: Progress | None = None,
) -> ProbeScores:
    """Score each entry's features on a class-balanced sample of the dataset's training split.

    Parameters
    ----------
    zoo : Zoo or path
        The zoo holding the entries.
    entry_ids : sequence of str
        Entries to score.
    dataset : Dataset
        The target dataset.
    per_class : int
        Images per class of the probe sample.
    seed : int
        Seed of the sample.
    scores : sequence of str
        Names from :func:`list_probe_scores`.
    device : torch.device or str, optional
        Where the networks run; CUDA when present by default.
    progress : Progress, optional
        Receives a :class:`~tans.progress.ProgressEvent` of stage ``"probe"`` after each entry
        (``done`` of ``total`` entries, ``message`` the entry's id).

    Returns
    -------
    ProbeScores

    Raises
    ------
    TansError
        For an unknown score name, a dataset without training images or with fewer than 2 classes
        in the sample, or an entry whose features cannot be scored (its id is named).
    """
    zoo = zoo if isinstance(zoo, Zoo) else Zoo.open(zoo)
    names = [scores] if isinstance(scores, str) else list(scores)
    fns = {name: get_probe_score(name) for name in names}  # unknown names fail before any work
    ids = list(entry_ids)
    start = time.perf_counter()
    images, labels = probe_sample(dataset, zoo.working_format, per_class=per_class, seed=seed)
    shared = time.perf_counter() - start
    counts = np.unique(labels, return_counts=True)[1]
    if counts.size < 2:
        raise TansError(f"Dataset '{dataset.name}' has {counts.size} class in its training split; probe scores need 2.")
    values = {name: np.empty(len(ids)) for name in names}
    score_seconds = {name: np.empty(len(ids)) for name in names}
    feature_seconds = np.empty(len(ids))
    tic = time.perf_counter()
    for i, (entry_id, feats) in enumerate(probe_features(zoo, ids, images, device=device)):
        feature_seconds[i] = time.perf_counter() - tic
        for name, fn in fns.items():
            tic = time.perf_counter()
            try:
                values[name][i] = fn(feats, labels)
            except TansError as exc:
                raise TansError(f"Entry {entry_id}: {exc}") from None
            score_seconds[name][i] = time.perf_counter() - tic
        emit(progress, "probe", i + 1, len(ids), entry_id)
        tic = time.perf_counter()
    return ProbeScores(
        ids=ids,
        scores=values,
        seconds_per_entry=feature_seconds + sum(score_seconds.values()),
        feature_seconds=feature_seconds,
        score_seconds=score_seconds,
        shared_seconds=shared,
        images=len(labels),
        chance=float(counts.max() / counts.sum()),
    )
