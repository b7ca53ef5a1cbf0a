"""The searcher as an estimator: ``Searcher(...).fit(zoo)``, ``.search(dataset, zoo=...)``, save/load.

Search, step by step (:meth:`Searcher.search`):

1. the query: a class-balanced sample of the dataset's training split (``per_class`` images per
   class) -> frozen features -> query encoder -> one unit vector;
2. the candidates: every zoo entry that satisfies the constraints (filtered *before* ranking; an
   impossible budget raises the error of :func:`tans.index.require_allowed`, which names the
   smallest value the zoo has);
3. retrieval: the ``shortlist`` candidates most similar to the query, from a FAISS index of the
   zoo's model embeddings (``make_index("auto", ...)``: exact below 50,000 entries). The index is
   cached per zoo and rebuilt when the zoo's set of entry ids changes, so entries added after
   meta-training are found with no retraining;
4. re-ranking by the predictor's predicted accuracy (ties by similarity);
5. with ``verify=True``: LogME of each shortlisted model's pre-logit features on a class-balanced
   sample of the dataset, shown, and fused with the step-4 order by mean rank (ties by LogME).
"""

from __future__ import annotations

import inspect
import math
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import torch

from tans._errors import TansError
from tans.data.dataset import Dataset
from tans.data.transforms import resize_images
from tans.index import Constraints, make_index, require_allowed
from tans.searcher.artifact import load_artifact, save_artifact
from tans.searcher.encoders import SearcherNet, model_inputs
from tans.searcher.features import (
    DEFAULT_EXTRACTOR,
    make_extractor,
    query_sample,
    train_default_extractor,
)
from tans.searcher.logme import logme_score
from tans.searcher.meta_train import EpochLog, MetaTask, MetaTrainConfig, MetaTrainResult, meta_train, split_tasks
from tans.zoo.entry import ZooEntry
from tans.zoo.store import Zoo

__all__ = ["Searcher", "SearchResult", "SearchRow"]

Progress = Callable[[str, int, int, "EpochLog | None"], None]


@dataclass(frozen=True)
class SearchRow:
    """One recommended model."""

    rank: int  # 1-based, after re-ranking
    id: str
    arch: str
    task: str  # the source task its weights were trained on
    similarity: float  # cosine similarity of query and model embeddings
    predicted_acc: float | None  # None when the searcher has no predictor
    logme: float | None  # None unless verify
    source_val_acc: float  # its validation accuracy on the source task
    params: int
    flops: int
    latency_ms: float


@dataclass
class SearchResult:
    """What :meth:`Searcher.search` found, with the budget and the time each step took."""

    rows: list[SearchRow]
    dataset: str
    query_images: int  # images the query encoder saw
    constraints: str  # human summary of the budget
    candidates: int  # zoo entries within the budget
    zoo_size: int
    shortlist: int
    verified: bool
    seconds: dict[str, float] = field(default_factory=dict)  # encode, retrieve, rerank, verify, total

    @property
    def ids(self) -> list[str]:
        """Entry ids, best first."""
        return [r.id for r in self.rows]

    @property
    def best(self) -> SearchRow:
        """The top recommendation."""
        return self.rows[0]

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["seconds"] = {k: round(v, 4) for k, v in self.seconds.items()}
        return out


@dataclass
class _ZooCache:
    key: tuple[str, ...]  # entry ids, in zoo order
    entries: list[ZooEntry]
    embeddings: np.ndarray  # (n, embed_dim) model embeddings
    index: Any  # VectorIndex over positions 0..n-1
    params: np.ndarray
    flops: np.ndarray
    latency_ms: np.ndarray


class Searcher:
    """Task-adaptive network search: embeds datasets and zoo models in one space and ranks models.

    The constructor only stores settings; :meth:`fit` learns (attributes ending in ``_``).

    Parameters
    ----------
    extractor : str
        Frozen image features: ``"tans-default"`` (trained on the meta-training tasks by
        :meth:`fit`, shipped in the artifact) or ``"timm/<name>"`` (pretrained weights must be in
        the local Hugging Face cache).
    set_encoder : str
        Query encoder pooling: ``"attention"`` (Set Transformer style) or ``"mean"``.
    embed_dim : int
        Width of the shared latent space.
    per_class : int
        Query images per class (class-balanced sample).
    pool_per_class : int
        Images per class of each meta-training task featurised once; query sets are drawn from it.
    epochs, steps_per_epoch, batch_tasks, lr : int, int, int, float
        Meta-training length, tasks per step and peak learning rate (:class:`MetaTrainConfig`).
    patience : int
        Stop meta-training after this many epochs without a better validation score (0: never).
    loss : str
        ``"infonce"`` or ``"margin"`` (the paper's hinge, for ablation).
    positives : int
        Each task's best models (by validation accuracy) used as positives.
    predictor_weight : float
        Weight of the predictor loss.
    use_functional : bool
        Model encoder reads functional embeddings (off: architecture only).
    use_predictor : bool
        Train and use the performance predictor for re-ranking.
    val_fraction : float
        Fraction of the zoo's tasks held out for validation and checkpoint selection.
    extractor_epochs : int
        Epochs of the default extractor's multi-task training.
    seed : int
        Seeds every random choice.
    device : str, optional
        ``"cpu"``, ``"cuda"``...; default CUDA when available.
    """

    def __init__(
        self,
        *,
        extractor: str = DEFAULT_EXTRACTOR,
        set_encoder: str = "attention",
        embed_dim: int = 128,
        per_class: int = 20,
        pool_per_class: int = 50,
        epochs: int = 20,
        steps_per_epoch: int = 50,
        batch_tasks: int = 16,
        lr: float = 1e-3,
        patience: int = 5,
        loss: str = "infonce",
        positives: int = 3,
        predictor_weight: float = 1.0,
        use_functional: bool = True,
        use_predictor: bool = True,
        val_fraction: float = 0.2,
        extractor_epochs: int = 3,
        seed: int = 0,
        device: str | None = None,
    ) -> None:
        self.extractor = extractor
        self.set_encoder = set_encoder
        self.embed_dim = embed_dim
        self.per_class = per_class
        self.pool_per_class = pool_per_class
        self.epochs = epochs
        self.steps_per_epoch = steps_per_epoch
        self.batch_tasks = batch_tasks
        self.lr = lr
        self.patience = patience
        self.loss = loss
        self.positives = positives
        self.predictor_weight = predictor_weight
        self.use_functional = use_functional
        self.use_predictor = use_predictor
        self.val_fraction = val_fraction
        self.extractor_epochs = extractor_epochs
        self.seed = seed
        self.device = device
        self._cache: dict[str, _ZooCache] = {}

    # ------------------------------------------------------------------ estimator plumbing
    def get_params(self) -> dict[str, Any]:
        """The constructor arguments, by name."""
        names = [p for p in inspect.signature(type(self).__init__).parameters if p != "self"]
        return {name: getattr(self, name) for name in names}

    def __repr__(self) -> str:
        defaults = {p.name: p.default for p in inspect.signature(type(self).__init__).parameters.values()}
        changed = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items() if v != defaults.get(k))
        return f"Searcher({changed})"

    def _device(self) -> torch.device:
        from tans.training.loop import default_device

        return torch.device(self.device) if self.device else default_device()

    def _meta_config(self) -> MetaTrainConfig:
        return MetaTrainConfig(
            epochs=self.epochs,
            steps_per_epoch=self.steps_per_epoch,
            batch_tasks=self.batch_tasks,
            lr=self.lr,
            patience=self.patience,
            per_class=self.per_class,
            positives=self.positives,
            loss=self.loss,
            predictor_weight=self.predictor_weight,
            use_predictor=self.use_predictor,
            seed=self.seed,
        )

    def _check_fitted(self) -> None:
        if not hasattr(self, "net_"):
            raise TansError("This Searcher is not fitted yet; call fit(zoo) or Searcher.load(path) first.")

    # ------------------------------------------------------------------ fit
    def fit(self, zoo: Zoo | str | os.PathLike[str], *, progress: Progress | None = None) -> Searcher:
        """Meta-train on a zoo: learn the extractor (default), encoders and predictor.

        Parameters
        ----------
        zoo : Zoo or path
            A zoo with models on at least two tasks; each task is loaded by its name
            (:func:`tans.data.load_dataset`), so built-in tasks and dataset paths both work.
        progress : callable, optional
            ``progress(stage, done, total, log)`` with stages ``"load"``, ``"extractor"`` and
            ``"meta-train"`` (``log`` is the :class:`EpochLog` of a meta-training epoch, else None).

        Returns
        -------
        Searcher
            ``self``, with ``extractor_``, ``net_``, ``result_`` (history), ``train_tasks_``,
            ``val_tasks_``, ``zoo_info_``.

        Raises
        ------
        TansError
            If the zoo has fewer than two tasks, a task cannot be loaded, or a setting is invalid.
        """
        from tans.data import load_dataset

        config = self._meta_config()  # validates before any work
        zoo = zoo if isinstance(zoo, Zoo) else Zoo.open(zoo)
        entries = zoo.entries()
        by_task: dict[str, list[int]] = {}
        for i, entry in enumerate(entries):
            by_task.setdefault(entry.task, []).append(i)
        if len(by_task) < 2:
            raise TansError(
                f"Meta-training needs a zoo with models on at least 2 tasks, got {len(by_task)} "
                f"({len(entries)} entries) in {zoo.path}; add tasks with `tans zoo build`."
            )
        train_names, val_names = split_tasks(list(by_task), self.val_fraction, self.seed)
        device = self._device()

        samples = {}
        names = sorted(by_task)
        for t, name in enumerate(names):
            try:
                dataset = load_dataset(name)
            except TansError as exc:
                raise TansError(f"Meta-training loads every task of the zoo by name; task '{name}' failed: {exc}") from None
            samples[name] = query_sample(dataset, per_class=self.pool_per_class, seed=self.seed)
            if progress:
                progress("load", t + 1, len(names), None)

        if self.extractor == DEFAULT_EXTRACTOR:
            extractor = train_default_extractor(
                [samples[n] for n in train_names],
                epochs=self.extractor_epochs,
                seed=self.seed,
                device=device,
                progress=(lambda d, n: progress("extractor", d, n, None)) if progress else None,
            )
        else:
            extractor = make_extractor(self.extractor)

        def task(name: str) -> MetaTask:
            idx = np.asarray(by_task[name], dtype=np.int64)
            feats = torch.from_numpy(extractor(samples[name].images, device=device)).to(device)
            return MetaTask(name, feats, samples[name].labels, idx, np.array([entries[i].val_acc for i in idx]))

        train_tasks = [task(n) for n in train_names]
        val_tasks = [task(n) for n in val_names]
        arch, functional = model_inputs(entries)
        torch.manual_seed(self.seed)
        net = SearcherNet(extractor.dim, self.embed_dim, set_encoder=self.set_encoder, use_functional=self.use_functional)
        result = meta_train(
            net,
            train_tasks,
            val_tasks,
            arch,
            functional,
            config,
            device=device,
            progress=(lambda log: progress("meta-train", log.epoch, config.epochs, log)) if progress else None,
        )
        self.extractor_ = extractor
        self.net_ = net.cpu().eval()
        self.result_ = result
        self.train_tasks_ = list(train_names)
        self.val_tasks_ = list(val_names)
        self.zoo_info_ = {"path": str(zoo.path), "entries": len(entries), "tasks": len(by_task)}
        self._cache.clear()
        return self

    # ------------------------------------------------------------------ embeddings
    @torch.no_grad()
    def embed_dataset(self, dataset: Dataset) -> np.ndarray:
        """Query embedding of a dataset.

        Parameters
        ----------
        dataset : Dataset
            Any labelled dataset (at least 2 classes).

        Returns
        -------
        np.ndarray
            ``(embed_dim,)`` float32 unit vector.
        """
        return self._embed(dataset)[0]

    @torch.no_grad()
    def _embed(self, dataset: Dataset) -> tuple[np.ndarray, int]:
        self._check_fitted()
        sample = query_sample(dataset, per_class=self.per_class, seed=self.seed)
        feats = torch.from_numpy(self.extractor_(sample.images))  # (n, feature_dim)
        return self.net_.query(feats[None]).numpy()[0], len(sample)

    @torch.no_grad()
    def embed_entries(self, entries: Sequence[ZooEntry]) -> np.ndarray:
        """Model embeddings of zoo entries (any entries: no retraining needed for new ones).

        Returns
        -------
        np.ndarray
            ``(n, embed_dim)`` float32 unit rows.
        """
        self._check_fitted()
        if not entries:
            return np.zeros((0, self.embed_dim), dtype=np.float32)
        arch, functional = model_inputs(entries)
        return self.net_.encode_models(torch.from_numpy(arch), torch.from_numpy(functional)).numpy()

    @torch.no_grad()
    def predict(self, query: np.ndarray, model_embeddings: np.ndarray) -> np.ndarray:
        """Predicted accuracy of each model on the query's dataset.

        Parameters
        ----------
        query : np.ndarray
            ``(embed_dim,)`` from :meth:`embed_dataset`.
        model_embeddings : np.ndarray
            ``(n, embed_dim)`` from :meth:`embed_entries`.

        Returns
        -------
        np.ndarray
            ``(n,)`` float32 in [0, 1].
        """
        self._check_fitted()
        q = torch.as_tensor(query, dtype=torch.float32)[None]
        m = torch.as_tensor(model_embeddings, dtype=torch.float32)
        return self.net_.predictor.score_matrix(q, m).numpy()[0]

    def _zoo_cache(self, zoo: Zoo) -> _ZooCache:
        """Model embeddings and index of ``zoo``; rebuilt when its set of entry ids changed."""
        ids = tuple(zoo.ids())
        cached = self._cache.get(str(zoo.path))
        if cached is not None and cached.key == ids:
            return cached
        entries = zoo.entries()
        embeddings = self.embed_entries(entries)
        index = make_index("auto", self.embed_dim, len(entries))
        index.add(embeddings, np.arange(len(entries), dtype=np.int64))
        cached = _ZooCache(
            key=tuple(e.id for e in entries),
            entries=entries,
            embeddings=embeddings,
            index=index,
            params=np.array([e.params for e in entries], dtype=np.float64),
            flops=np.array([e.flops for e in entries], dtype=np.float64),
            latency_ms=np.array([e.latency_ms for e in entries], dtype=np.float64),
        )
        self._cache[str(zoo.path)] = cached
        return cached

    # ------------------------------------------------------------------ search
    def search(
        self,
        dataset: Dataset | str,
        *,
        zoo: Zoo | str | os.PathLike[str],
        constraints: Constraints | None = None,
        top_k: int = 5,
        shortlist: int | None = None,
        verify: bool = False,
        verify_per_class: int = 20,
    ) -> SearchResult:
        """The zoo models that should do best on ``dataset`` within the budget.

        Parameters
        ----------
        dataset : Dataset or str
            The new dataset (or a name/path for :func:`tans.data.load_dataset`).
        zoo : Zoo or path
            The zoo to search (entries added after :meth:`fit` are included).
        constraints : Constraints, optional
            Budget on parameters, FLOPs, latency; applied before ranking.
        top_k : int
            Models returned.
        shortlist : int, optional
            Candidates retrieved by similarity and re-ranked; default ``max(4 * top_k, 20)``.
        verify : bool
            Score the shortlist with LogME on the dataset's features and fuse it into the order.
        verify_per_class : int
            Images per class for LogME.

        Returns
        -------
        SearchResult

        Raises
        ------
        TansError
            If not fitted, ``top_k``/``shortlist`` are not positive, the zoo is empty, or no model
            fits the budget (the message names the smallest value available).
        """
        from tans.data import load_dataset

        self._check_fitted()
        for name, value in (("top_k", top_k), ("shortlist", shortlist)):
            if value is not None and (isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1):
                raise TansError(f"{name} must be a positive integer, got {value!r}.")
        if isinstance(dataset, (str, os.PathLike)):
            dataset = load_dataset(str(dataset))
        if not isinstance(dataset, Dataset):
            raise TansError(f"search expects a Dataset or a dataset name/path, got {type(dataset).__name__}.")
        zoo = zoo if isinstance(zoo, Zoo) else Zoo.open(zoo)
        constraints = constraints or Constraints()
        seconds: dict[str, float] = {}
        start = time.perf_counter()

        cache = self._zoo_cache(zoo)
        allowed = require_allowed(constraints, cache.params, cache.flops, cache.latency_ms)
        q, query_images = self._embed(dataset)
        seconds["encode"] = time.perf_counter() - start

        tic = time.perf_counter()
        size = int(min(shortlist or max(4 * top_k, 20), int(allowed.sum())))
        size = max(size, min(top_k, int(allowed.sum())))
        scores, pos = cache.index.search(q[None], size, allowed_ids=np.flatnonzero(allowed))
        keep = pos[0] >= 0
        sims, pos = scores[0][keep], pos[0][keep]
        seconds["retrieve"] = time.perf_counter() - tic

        tic = time.perf_counter()
        predicted = self.predict(q, cache.embeddings[pos]) if self.use_predictor else None
        primary = predicted if predicted is not None else sims
        order = np.lexsort((-sims, -primary))  # by predicted accuracy, then similarity
        seconds["rerank"] = time.perf_counter() - tic

        logme = None
        if verify:
            tic = time.perf_counter()
            logme = self._logme(dataset, [cache.entries[p] for p in pos], zoo, verify_per_class)
            rank_primary = np.empty(len(pos))
            rank_primary[order] = np.arange(len(pos))
            rank_logme = np.empty(len(pos))
            rank_logme[np.argsort(-logme, kind="stable")] = np.arange(len(pos))
            order = np.lexsort((-logme, (rank_primary + rank_logme) / 2))  # mean rank, then LogME
            seconds["verify"] = time.perf_counter() - tic

        rows = []
        for rank, j in enumerate(order[:top_k]):
            entry = cache.entries[pos[j]]
            rows.append(
                SearchRow(
                    rank=rank + 1,
                    id=entry.id,
                    arch=entry.arch,
                    task=entry.task,
                    similarity=float(sims[j]),
                    predicted_acc=None if predicted is None else float(predicted[j]),
                    logme=None if logme is None else float(logme[j]),
                    source_val_acc=entry.val_acc,
                    params=entry.params,
                    flops=entry.flops,
                    latency_ms=entry.latency_ms,
                )
            )
        seconds["total"] = time.perf_counter() - start
        return SearchResult(
            rows=rows,
            dataset=dataset.name,
            query_images=query_images,
            constraints=constraints.describe(),
            candidates=int(allowed.sum()),
            zoo_size=len(cache.entries),
            shortlist=len(pos),
            verified=verify,
            seconds=seconds,
        )

    @torch.no_grad()
    def _logme(self, dataset: Dataset, entries: Sequence[ZooEntry], zoo: Zoo, per_class: int) -> np.ndarray:
        """LogME of each entry's pre-logit features on a class-balanced sample of ``dataset``."""
        from tans.space.registry import create_model
        from tans.training.loop import to_input

        sample = query_sample(dataset, per_class=per_class, seed=self.seed)
        images, fmt = sample.images, zoo.working_format
        if images.shape[1:] != (fmt.size, fmt.size, fmt.channels):
            images = resize_images(images, fmt.size, fmt.channels)
        x = to_input(images)
        out = np.empty(len(entries))
        for i, entry in enumerate(entries):
            model = create_model(entry.arch, num_classes=entry.num_classes)
            model.load_state_dict(zoo.load_state_dict(entry.id))
            model.eval()
            feats = model.forward_head(model.forward_features(x), pre_logits=True)
            out[i] = logme_score(feats.reshape(len(x), -1).double().numpy(), sample.labels)
        return out

    # ------------------------------------------------------------------ persistence
    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the fitted searcher as one versioned artifact directory.

        Parameters
        ----------
        path : str or Path
            Directory (created).

        Returns
        -------
        Path

        Raises
        ------
        TansError
            If not fitted or ``path`` is a file.
        """
        from tans import __version__

        self._check_fitted()
        config = {
            "tans_version": __version__,
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "params": self.get_params(),
            "extractor": self.extractor_.config(),
            "meta_train": self.result_.to_dict(),
            "zoo": self.zoo_info_,
        }
        tensors = {f"extractor.{k}": v for k, v in self.extractor_.state_dict().items()}
        tensors.update({f"net.{k}": v for k, v in self.net_.state_dict().items()})
        return save_artifact(path, config, tensors)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Searcher:
        """Read a searcher written by :meth:`save`.

        Raises
        ------
        TansError
            If the artifact is missing, of another format version, modified or inconsistent.
        """
        config, tensors = load_artifact(path)
        try:
            # image_size was a setting before the zoo recorded its own working format
            searcher = cls(**{k: v for k, v in config["params"].items() if k != "image_size"})
            ext_cfg = dict(config["extractor"])
            ext_state = {k[len("extractor.") :]: v for k, v in tensors.items() if k.startswith("extractor.")}
            extractor = make_extractor(ext_cfg.pop("name"), state_dict=ext_state or None, **ext_cfg)
            net = SearcherNet(
                extractor.dim, searcher.embed_dim, set_encoder=searcher.set_encoder, use_functional=searcher.use_functional
            )
            net.load_state_dict({k[len("net.") :]: v for k, v in tensors.items() if k.startswith("net.")})
        except (KeyError, TypeError, RuntimeError) as exc:
            raise TansError(f"The searcher at '{path}' is inconsistent ({type(exc).__name__}: {exc}); re-run `tans meta-train`.") from None
        searcher.extractor_ = extractor
        searcher.net_ = net.eval()
        meta = config.get("meta_train", {})
        searcher.result_ = MetaTrainResult(
            history=[_epoch_from_dict(h) for h in meta.get("history", [])],
            best_epoch=meta.get("best_epoch", 0),
            train_tasks=meta.get("train_tasks", []),
            val_tasks=meta.get("val_tasks", []),
            seconds=meta.get("seconds", 0.0),
        )
        searcher.train_tasks_ = list(searcher.result_.train_tasks)
        searcher.val_tasks_ = list(searcher.result_.val_tasks)
        searcher.zoo_info_ = config.get("zoo", {})
        return searcher


def _epoch_from_dict(values: dict) -> EpochLog:
    values = dict(values)
    values["recall"] = {int(k): (math.nan if v is None else v) for k, v in values.get("recall", {}).items()}
    values = {k: (math.nan if v is None else v) for k, v in values.items()}
    return EpochLog(**values)
