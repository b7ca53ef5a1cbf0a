"""The searcher as an estimator: ``Searcher(...).fit(zoo)``, ``.search(dataset, zoo=...)``, save/load.

It learns from the zoo's *transfer records* (``tans zoo transfer``): what each model reached after
fine-tuning on other tasks. Search, step by step (:meth:`Searcher.search`):

1. the query: a class-balanced sample of the dataset's training split (``per_class`` images per
   class) -> frozen features -> query encoder -> one unit vector;
2. the candidates: every zoo entry that satisfies the constraints (filtered *before* ranking; an
   impossible budget raises the error of :func:`tans.index.require_allowed`, which names the
   smallest value the zoo has);
3. stage 1, instant: the ``shortlist`` candidates most similar to the query from a FAISS index of
   the zoo's model embeddings (by default every candidate of a zoo of up to 1,024 models), ranked
   by the expected accuracy: the predictor's, blended with each model's track record in the
   transfer records, read mostly from the record targets whose outcomes look like what the
   predictor expects on the query (:mod:`tans.searcher.track_record`). A model's embedding reads its
   architecture, cost, source accuracy and its source task's query embedding, so entries added
   after meta-training are found with no retraining (the index is rebuilt when the zoo's set of
   entry ids changes; they have no track record until a refit);
4. stage 2 (default; ``fast=True`` skips it): one forward pass of the top ``probe_k`` models on a
   class-balanced sample of the training split, training-free scores of their features (LogME and
   nearest-class-mean accuracy, :mod:`tans.searcher.probe`), fused with stage 1 by the combiner
   fitted on the records (:mod:`tans.searcher.combiner`); those models are re-ordered by the fused
   expected accuracy, the rest follow in stage-1 order.
"""

from __future__ import annotations

import inspect
import json
import math
import os
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, TypedDict

import numpy as np
import torch

from tans._errors import TansError
from tans.data.dataset import Dataset
from tans.index import Constraints, make_index, require_allowed
from tans.progress import Progress, emit
from tans.searcher.artifact import load_artifact, save_artifact
from tans.searcher.combiner import ProbeCombiner, fusion_features, lift
from tans.searcher.encoders import SearcherNet, model_inputs
from tans.searcher.experience import transfer_table
from tans.searcher.features import (
    DEFAULT_EXTRACTOR,
    make_extractor,
    query_sample,
    train_default_extractor,
)
from tans.searcher.halving import check_budget, successive_halving
from tans.searcher.meta_train import (
    EpochLog,
    MetaInputs,
    MetaPool,
    MetaTrainConfig,
    MetaTrainResult,
    evaluate_targets,
    meta_train,
    query_batch,
    split_by_family,
)
from tans.searcher.track_record import Standings, TrackRecordBlend, standings
from tans.zoo.entry import ZooEntry
from tans.zoo.store import Zoo

__all__ = ["SearchOptions", "SearchResult", "SearchRow", "Searcher"]

@dataclass(frozen=True)
class SearchRow:
    """One recommended model."""

    rank: int  # 1-based, after re-ranking
    id: str
    arch: str
    task: str  # the source task its weights were trained on
    similarity: float  # cosine similarity of query and model embeddings
    predicted_acc: float  # expected test accuracy after the records' fine-tuning recipe
    stage1_acc: float  # stage 1's expected accuracy (equal to predicted_acc when not probed)
    logme: float | None  # probe scores; None unless stage 2 probed this model
    ncm: float | None
    finetune_val_acc: float | None  # validation accuracy of its last stage-3 fine-tune; None if stage 3 did not run it
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
    probed: int  # models stage 2 ran (0: stage 1 only)
    finetunes: int = 0  # short fine-tunes stage 3 ran (0: no --finetune-budget)
    seconds: dict[str, float] = field(default_factory=dict)  # encode, retrieve, rerank, probe, finetune, total

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
    standings: np.ndarray  # (K, n) record targets' standings of the entries (NaN: none)
    level_rows: np.ndarray  # positions whose predictions give stage 1's level and spread on a query


SHORTLIST = 1024  # default candidates stage 1 ranks (a few ms of predictor on a CPU)
LEVEL_MODELS = 4096  # stage 1 reads the level and spread of its predictions over at most this many models


def _check_positive(name: str, value: Any) -> None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1):
        raise TansError(f"{name} must be a positive integer, got {value!r}.")


class SearchOptions(TypedDict, total=False):
    """The keywords of :meth:`Searcher.search` besides ``zoo``, which wrappers such as :func:`tans.search` pass on."""

    constraints: Constraints | None
    max_params: int | None
    max_flops: int | None
    max_latency_ms: float | None
    top_k: int
    shortlist: int | None
    fast: bool
    probe_k: int | None
    finetune_budget: float | None
    progress: Progress | None


_META = MetaTrainConfig()  # meta-training's defaults, defined once there


class Searcher:
    """Task-adaptive network search: embeds datasets and zoo models in one space and ranks models.

    The constructor only stores settings; :meth:`fit` learns (attributes ending in ``_``).

    Parameters
    ----------
    extractor : str
        Frozen image features: ``"tans-default"`` (trained on the zoo's source tasks by
        :meth:`fit`, shipped in the artifact) or ``"timm/<name>"`` (pretrained weights must be in
        the local Hugging Face cache).
    set_encoder : str
        Query encoder pooling: ``"attention"`` (Set Transformer style) or ``"mean"``.
    embed_dim, hidden_dim : int
        Width of the shared latent space, and of the model encoder and predictor.
    dropout : float
        Dropout of the model encoder and predictor.
    per_class : int
        Query images per class (class-balanced sample).
    pool_per_class : int
        Images per class of each task featurised once for meta-training; query sets are drawn from it.
    epochs, steps_per_epoch, batch_targets, lr, weight_decay : int, int, int, float, float
        Meta-training length, targets per step, peak learning rate and weight decay.
    patience : int
        Stop meta-training after this many epochs without a better validation tau (0: never).
    positives : int
        Each target's best-transferring models used as contrastive positives.
    predictor_weight : float
        Weight of the predictor loss.
    rank_within_budgets : bool
        Meta-train the ranking under random parameter budgets, as searches rank (see
        :class:`~tans.searcher.meta_train.MetaTrainConfig`).
    use_functional, use_source : bool
        Model encoder reads functional embeddings / the source task's query embedding.
    use_track_record : bool
        Stage 1 blends the predictor's expected accuracy with each model's track record in the
        transfer records (its standings on the record targets, weighted by how much each target
        looks like the query to the predictor): a fixed weight and temperature, one scale fitted
        on the validation families (:class:`~tans.searcher.track_record.TrackRecordBlend`).
    probe_k : int
        Stage 2 probes this many stage-1 candidates (0: no stage 2, no combiner). 6: replayed on
        leave-one-family-out records within the bench's budgets, 6 probes tie with 8 under p35 and
        over every candidate and have lower regret under p70, at three quarters of the cost
        (benchmarks/results/stage2_blend_within_budgets.md).
    probe_per_class : int
        Images per class of stage 2's probe sample (as many as the benchmark's over-every-candidate
        baselines see: a candidate's forward pass costs about the same for 10 or 20 images per
        class, its per-model overhead dominates, and NCM and LogME are less noisy on more).
    probe_scores : tuple of str
        Training-free scores stage 2 computes (:func:`tans.searcher.probe.list_probe_scores`).
    probe_stage1_weight : float
        Weight of stage 1's z-score in stage 2's order, relative to each probe score's (see
        :class:`~tans.searcher.combiner.ProbeCombiner`; 0.5 chosen by leave-one-family-out).
    val_fraction : float
        Fraction of the record targets held out, whole families at a time, to choose the
        checkpoint and to fit stage 2's combiner (targets stage 1 did not train on).
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
        embed_dim: int = 64,
        hidden_dim: int = 128,
        dropout: float = 0.1,
        per_class: int = _META.per_class,
        pool_per_class: int = 50,
        epochs: int = _META.epochs,
        steps_per_epoch: int = _META.steps_per_epoch,
        batch_targets: int = _META.batch_targets,
        lr: float = _META.lr,
        weight_decay: float = _META.weight_decay,
        patience: int = _META.patience,
        positives: int = _META.positives,
        predictor_weight: float = _META.predictor_weight,
        rank_within_budgets: bool = _META.rank_within_budgets,
        use_functional: bool = False,
        use_source: bool = True,
        use_track_record: bool = True,
        probe_k: int = 6,
        probe_per_class: int = 20,
        probe_scores: tuple[str, ...] = ("logme", "ncm"),
        probe_stage1_weight: float = 0.5,
        val_fraction: float = 0.25,
        extractor_epochs: int = 3,
        seed: int = 0,
        device: str | None = None,
    ) -> None:
        self.extractor = extractor
        self.set_encoder = set_encoder
        self.embed_dim = embed_dim
        self.hidden_dim = hidden_dim
        self.dropout = dropout
        self.per_class = per_class
        self.pool_per_class = pool_per_class
        self.epochs = epochs
        self.steps_per_epoch = steps_per_epoch
        self.batch_targets = batch_targets
        self.lr = lr
        self.weight_decay = weight_decay
        self.patience = patience
        self.positives = positives
        self.predictor_weight = predictor_weight
        self.rank_within_budgets = rank_within_budgets
        self.use_functional = use_functional
        self.use_source = use_source
        self.use_track_record = use_track_record
        self.probe_k = probe_k
        self.probe_per_class = probe_per_class
        self.probe_scores = tuple(probe_scores)
        self.probe_stage1_weight = probe_stage1_weight
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
            batch_targets=self.batch_targets,
            lr=self.lr,
            weight_decay=self.weight_decay,
            patience=self.patience,
            per_class=self.per_class,
            positives=self.positives,
            predictor_weight=self.predictor_weight,
            rank_within_budgets=self.rank_within_budgets,
            seed=self.seed,
        )

    def _new_net(self, feature_dim: int) -> SearcherNet:
        return SearcherNet(
            feature_dim,
            self.embed_dim,
            set_encoder=self.set_encoder,
            use_functional=self.use_functional,
            use_source=self.use_source,
            hidden_dim=self.hidden_dim,
            dropout=self.dropout,
        )

    def _check_fitted(self) -> None:
        if not hasattr(self, "net_"):
            raise TansError("This Searcher is not fitted yet; call fit(zoo) or Searcher.load(path) first.")

    # ------------------------------------------------------------------ fit
    def fit(
        self,
        zoo: Zoo | str | os.PathLike[str],
        *,
        exclude_families: Sequence[str] = (),
        progress: Progress | None = None,
    ) -> Searcher:
        """Meta-train on a zoo's transfer records: the extractor (default), encoders, predictor and combiner.

        Parameters
        ----------
        zoo : Zoo or path
            A zoo with transfer records (``tans zoo transfer``); its source tasks and record
            targets are loaded through the zoo's task references (built-in names or paths).
        exclude_families : sequence of str
            Ignore the records of targets of these families (benchmark test families, or the family
            a leave-one-family-out validation holds out).
        progress : Progress, optional
            Receives events (:class:`~tans.progress.ProgressEvent`) of stages ``"load"`` (one per
            task loaded, ``message`` its name), ``"extractor"`` (epochs of the default extractor),
            ``"meta-train"`` (epochs; ``extra["log"]`` is that epoch's :class:`EpochLog`) and
            ``"combiner"`` (validation shortlists probed for stage 2).

        Returns
        -------
        Searcher
            ``self``, with ``extractor_``, ``net_``, ``combiner_`` (None without stage 2),
            ``stage1_blend_`` and ``track_record_`` (the records' :class:`~tans.searcher.track_record.Standings`;
            both None without track records, or with too few validation targets to fit the blend), ``source_embeddings_``, ``result_``
            (history), ``records_`` and ``zoo_info_``.

        Raises
        ------
        TansError
            If the zoo has no transfer records, a task cannot be loaded, or a setting is invalid.
        """
        from tans.searcher.probe import get_probe_score

        config = self._meta_config()  # validates before any work
        for name in self.probe_scores:
            get_probe_score(name)
        _check_positive("probe_per_class", self.probe_per_class)
        zoo = zoo if isinstance(zoo, Zoo) else Zoo.open(zoo)
        table = transfer_table(zoo, exclude_families=exclude_families)
        entries = table.entries
        device = self._device()

        source_fps = sorted({e.task_fingerprint for e in entries})
        to_load = source_fps + [t for t in table.targets if t not in set(source_fps)]
        datasets: dict[str, Dataset] = {}
        for i, fp in enumerate(to_load):
            datasets[fp] = zoo.load_task(fp)
            emit(progress, "load", i + 1, len(to_load), datasets[fp].name)
        samples = {fp: query_sample(ds, per_class=self.pool_per_class, seed=self.seed) for fp, ds in datasets.items()}

        if self.extractor == DEFAULT_EXTRACTOR:
            extractor = train_default_extractor(
                [samples[fp] for fp in source_fps],
                epochs=self.extractor_epochs,
                seed=self.seed,
                device=device,
                progress=progress,
            )
        else:
            extractor = make_extractor(self.extractor)

        def pool(fp: str) -> MetaPool:
            feats = torch.from_numpy(extractor(samples[fp].images, device=device)).to(device)
            return MetaPool(datasets[fp].name, feats, samples[fp].labels)

        pools = {fp: pool(fp) for fp in to_load}
        static, functional = model_inputs(entries)
        source_index = {fp: i for i, fp in enumerate(source_fps)}
        inputs = MetaInputs(
            table=table,
            targets=[pools[fp] for fp in table.targets],
            sources=[pools[fp] for fp in source_fps],
            source_of=np.array([source_index[e.task_fingerprint] for e in entries], dtype=np.int64),
            static=static,
            functional=functional,
        )
        train_rows, val_rows = split_by_family(table.families, self.val_fraction, self.seed)
        torch.manual_seed(self.seed)
        net = self._new_net(extractor.dim)
        net.query.fit_standardization(torch.cat([p.features.cpu() for p in pools.values()]))
        result = meta_train(
            net,
            inputs,
            train_rows,
            val_rows,
            config,
            device=device,
            progress=progress,
        )
        net = net.cpu().eval()
        self.extractor_ = extractor
        self.net_ = net
        with torch.no_grad():  # a query-sized sample of each source's already extracted pool
            rng = np.random.default_rng(self.seed)
            x, mask = query_batch([MetaPool(p.name, p.features.cpu(), p.labels) for p in inputs.sources],
                                   self.per_class, rng, "cpu")
            self.source_embeddings_ = dict(zip(source_fps, net.query(x, mask).numpy()))
        self.result_ = result
        self.records_ = {
            "records": table.records,
            "targets": len(table.targets),
            "models": int(table.observed.any(axis=0).sum()),
            "recipe": table.recipe,
            "excluded_families": sorted(set(exclude_families)),
        }
        self.zoo_info_ = {"path": str(zoo.path), "entries": len(entries), "sources": len(source_fps)}
        self.combiner_ = None
        self.stage1_blend_ = None
        self.track_record_ = None
        self._cache.clear()
        if (self.probe_k > 0 or self.use_track_record) and len(val_rows) >= 2:
            inputs.targets = [MetaPool(p.name, p.features.cpu(), p.labels) for p in inputs.targets]
            inputs.sources = [MetaPool(p.name, p.features.cpu(), p.labels) for p in inputs.sources]
            _, predicted = evaluate_targets(net, inputs, val_rows, per_class=self.per_class, seed=self.seed)
            if self.use_track_record:
                predicted = self._fit_track_record(table, train_rows, val_rows, predicted)
            if self.probe_k > 0:  # on stage 1 as searches will run it
                self.combiner_ = self._fit_combiner(zoo, table, val_rows, predicted, datasets, progress)
        if self.stage1_blend_ is not None:  # every record now: a search's dataset is new to all of them
            self.track_record_ = Standings([e.id for e in entries], standings(table))
        return self

    def _fit_track_record(self, table, train_rows, val_rows, predicted: np.ndarray) -> np.ndarray:
        """Fit stage 1's blend on the validation targets, reading track records of the training
        targets only; returns the blended expected accuracy ``(len(val_rows), M)`` (``predicted``
        unchanged if too few targets to fit)."""
        chance = table.chance[val_rows][:, None].astype(np.float64)
        predicted_lift = (predicted - chance) / (1.0 - chance)
        actual_lift = (table.accuracy[val_rows] - chance) / (1.0 - chance)
        cands = [table.candidates(r) for r in val_rows]
        blend = TrackRecordBlend()
        held = standings(table, train_rows)
        records = np.stack([blend.records(p, held) for p in predicted_lift])
        try:
            blend.fit(predicted_lift, [actual_lift[i, c] for i, c in enumerate(cands)], cands, records)
        except TansError:
            return predicted
        self.stage1_blend_ = blend
        blended = np.stack([blend.apply(p, r, p.mean(), p.std()) for p, r in zip(predicted_lift, records)])
        return chance + (1.0 - chance) * np.clip(blended, 0.0, 1.0)

    def _fit_combiner(self, zoo, table, rows, predicted, datasets, progress) -> ProbeCombiner:
        """Fit stage 2's fusion on targets stage 1 did not train on, plus label-shuffled null copies."""
        from tans.searcher.probe import get_probe_score, probe_features, probe_sample

        rng = np.random.default_rng(self.seed)
        X, y, groups, null = [], [], [], []
        for i, r in enumerate(rows):
            cands = table.candidates(r)
            if len(cands) < 2:
                continue
            # twice the search's shortlist: more rows for the order, and the models just below the cut
            top = cands[np.argsort(-predicted[i, cands], kind="stable")[: 2 * self.probe_k]]
            images, labels = probe_sample(datasets[table.targets[r]], zoo.working_format, per_class=self.probe_per_class,
                                          seed=self.seed)
            feats = dict(probe_features(zoo, [table.entries[j].id for j in top], images))
            shuffled = rng.permutation(labels)
            probe_chance = float(np.bincount(labels).max() / len(labels))
            for name, lab, acc in (("real", labels, table.accuracy[r, top]), ("null", shuffled, None)):
                scores = {s: np.array([get_probe_score(s)(feats[table.entries[j].id], lab) for j in top])
                          for s in self.probe_scores}
                X.append(fusion_features(predicted[i, top], float(table.chance[r]), scores, probe_chance))
                y.append(lift(acc, float(table.chance[r])) if acc is not None else np.zeros(len(top)))
                groups += [f"{name}:{table.targets[r]}"] * len(top)
                null += [name == "null"] * len(top)
            emit(progress, "combiner", i + 1, len(rows))
        if len(set(groups)) < 4:  # two real shortlists and their null copies
            return None
        return ProbeCombiner(scores=self.probe_scores, stage1_weight=self.probe_stage1_weight).fit(np.concatenate(X), np.concatenate(y), np.array(groups),
                                                           null=np.array(null))

    # ------------------------------------------------------------------ embeddings
    @torch.no_grad()
    def _query_embedding(self, images: np.ndarray) -> np.ndarray:
        feats = torch.from_numpy(self.extractor_(images))  # (n, feature_dim)
        return self.net_.query(feats[None]).numpy()[0]

    @torch.no_grad()
    def embed_dataset(self, dataset: Dataset) -> np.ndarray:
        """Query embedding of a dataset.

        Parameters
        ----------
        dataset : Dataset
            Any labelled dataset (at least 2 classes); only its training split is sampled.

        Returns
        -------
        np.ndarray
            ``(embed_dim,)`` float32 unit vector.
        """
        self._check_fitted()
        return self._query_embedding(query_sample(dataset, per_class=self.per_class, seed=self.seed).images)

    def _source_embedding(self, zoo: Zoo | None, entry: ZooEntry) -> np.ndarray:
        """The query embedding of an entry's source task: stored at fit time, else computed once."""
        fp = entry.task_fingerprint
        if fp not in self.source_embeddings_:
            if zoo is None:
                raise TansError(f"entry {entry.id}'s source task '{entry.task}' is new to this searcher; pass its zoo.")
            dataset = zoo.load_task(fp)
            self.source_embeddings_[fp] = self._query_embedding(
                query_sample(dataset, per_class=self.per_class, seed=self.seed).images
            )
        return self.source_embeddings_[fp]

    @torch.no_grad()
    def embed_entries(self, entries: Sequence[ZooEntry], zoo: Zoo | None = None) -> np.ndarray:
        """Model embeddings of zoo entries (any entries: no retraining needed for new ones).

        Parameters
        ----------
        entries : sequence of ZooEntry
            Entries to embed.
        zoo : Zoo, optional
            Their zoo: needed when an entry's source task is new to the searcher (it is loaded
            through the zoo's task reference and embedded once).

        Returns
        -------
        np.ndarray
            ``(n, embed_dim)`` float32 unit rows.
        """
        self._check_fitted()
        if not entries:
            return np.zeros((0, self.embed_dim), dtype=np.float32)
        static, functional = model_inputs(entries)
        source = np.stack([self._source_embedding(zoo, e) for e in entries]) if self.use_source else None
        return self.net_.encode_models(
            torch.from_numpy(static), torch.from_numpy(functional), None if source is None else torch.from_numpy(source)
        ).numpy()

    @torch.no_grad()
    def predict(self, query: np.ndarray, model_embeddings: np.ndarray, *, chance: float) -> np.ndarray:
        """The predictor's expected test accuracy of each model on the query's dataset (stage 1
        blends it with the models' track records: :meth:`predict_entries`).

        Parameters
        ----------
        query : np.ndarray
            ``(embed_dim,)`` from :meth:`embed_dataset`.
        model_embeddings : np.ndarray
            ``(n, embed_dim)`` from :meth:`embed_entries`.
        chance : float
            The dataset's chance level (``1 / classes`` for balanced classes).

        Returns
        -------
        np.ndarray
            ``(n,)`` float32 in [chance, 1].
        """
        self._check_fitted()
        q = torch.as_tensor(query, dtype=torch.float32)[None]
        m = torch.as_tensor(model_embeddings, dtype=torch.float32)
        return self.net_.predict(q, m, torch.tensor([chance], dtype=torch.float32)).numpy()[0]

    def predict_entries(
        self, dataset: Dataset, entries: Sequence[ZooEntry], *, zoo: Zoo, probe: bool = False
    ) -> tuple[np.ndarray, np.ndarray]:
        """Expected test accuracy of any zoo entries on ``dataset``, and the scores that order them.

        For evaluation and tables: search itself probes only its stage-1 shortlist.

        Parameters
        ----------
        dataset : Dataset
            The dataset (its training split is sampled).
        entries : sequence of ZooEntry
            Entries of ``zoo`` to score, in any number.
        zoo : Zoo
            Their zoo.
        probe : bool
            Fuse stage 2's probe scores of *every* given entry with stage 1 (needs a combiner).

        Returns
        -------
        (np.ndarray, np.ndarray)
            ``(n,)`` expected accuracies (in [chance, 1]) and ``(n,)`` ranking scores (higher is
            better; unclipped, so entries never tie at a bound; stage 2's output when probed).

        Raises
        ------
        TansError
            If an entry is not in ``zoo``.
        """
        chance = 1.0 / max(dataset.num_classes, 1)
        cache = self._zoo_cache(zoo)
        at = {entry_id: i for i, entry_id in enumerate(cache.key)}
        missing = [e.id for e in entries if e.id not in at]
        if missing:
            raise TansError(f"predict_entries: {len(missing)} entries are not in the zoo at {zoo.path} (e.g. {missing[0]}).")
        stage1, stage1_order = self._stage1(self.embed_dataset(dataset), cache,
                                            np.array([at[e.id] for e in entries], dtype=np.int64), chance)
        if not probe or self.combiner_ is None:
            return stage1, stage1_order
        probes, probe_chance = self._probe(dataset, [e.id for e in entries], zoo)
        features = fusion_features(stage1, chance, probes, probe_chance)
        return chance + (1.0 - chance) * self.combiner_.predict(features), self.combiner_.decision(features)

    def _stage1(self, query: np.ndarray, cache: _ZooCache, pos: np.ndarray, chance: float) -> tuple[np.ndarray, np.ndarray]:
        """Stage 1's expected accuracy of the cached entries ``pos`` and its unclipped order score."""
        acc = self.predict(query, cache.embeddings[pos], chance=chance).astype(np.float64)
        if self.stage1_blend_ is None:
            return acc, acc
        zoo_lift = lift(self.predict(query, cache.embeddings[cache.level_rows], chance=chance), chance)
        records = self.stage1_blend_.records(zoo_lift, cache.standings, at=cache.level_rows)
        blended = self.stage1_blend_.apply(lift(acc, chance), records[pos], zoo_lift.mean(), zoo_lift.std())
        return chance + (1.0 - chance) * np.clip(blended, 0.0, 1.0), chance + (1.0 - chance) * blended

    def _zoo_cache(self, zoo: Zoo) -> _ZooCache:
        """Model embeddings and index of ``zoo``; rebuilt when its set of entry ids changed."""
        ids = tuple(zoo.ids())
        cached = self._cache.get(str(zoo.path))
        if cached is not None and cached.key == ids:
            return cached
        entries = zoo.entries()
        embeddings = self.embed_entries(entries, zoo)
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
            standings=(self.track_record_.columns([e.id for e in entries]) if self.track_record_ is not None
                       else np.zeros((0, len(entries)))),
            level_rows=np.unique(np.linspace(0, len(entries) - 1, min(len(entries), LEVEL_MODELS)).round().astype(np.int64)),
        )
        self._cache[str(zoo.path)] = cached
        return cached

    # ------------------------------------------------------------------ search
    def search(
        self,
        dataset: Dataset | str | os.PathLike[str],
        *,
        zoo: Zoo | str | os.PathLike[str],
        constraints: Constraints | None = None,
        max_params: int | None = None,
        max_flops: int | None = None,
        max_latency_ms: float | None = None,
        top_k: int = 5,
        shortlist: int | None = None,
        fast: bool = False,
        probe_k: int | None = None,
        finetune_budget: float | None = None,
        progress: Progress | None = None,
    ) -> SearchResult:
        """The zoo models that should do best on ``dataset`` after fine-tuning, within the budget.

        Parameters
        ----------
        dataset : Dataset, str or path
            The new dataset (or a name/path for :func:`tans.data.load_dataset`).
        zoo : Zoo or path
            The zoo to search (entries added after :meth:`fit` are included).
        constraints : Constraints, optional
            Budget on parameters, FLOPs, latency; applied before ranking. The ``max_*`` keywords
            are the same budget given directly (not both).
        max_params, max_flops, max_latency_ms : number, optional
            Upper bounds (inclusive).
        top_k : int
            Models returned.
        shortlist : int, optional
            Candidates retrieved by similarity and ranked by stage 1; default ``max(4 * top_k, SHORTLIST)``
            (1,024): stage 1 ranks every candidate of a zoo up to that size, as its validation does,
            and the similarity index only narrows larger zoos.
        fast : bool
            Stage 1 only: no forward pass of any candidate.
        probe_k : int, optional
            Stage-1 candidates stage 2 probes (default: the searcher's ``probe_k``).
        finetune_budget : float, optional
            Seconds for stage 3: successive halving with short fine-tunes over the first
            ``probe_k`` candidates, picked by validation accuracy
            (:func:`tans.searcher.halving.successive_halving`); its time counts in the search's.
        progress : Progress, optional
            Receives events (:class:`~tans.progress.ProgressEvent`) of stage ``"probe"`` after each
            model stage 2 runs (:func:`~tans.searcher.probe.probe_scores`) and ``"finetune"`` after
            each of stage 3's fine-tunes (:func:`~tans.searcher.halving.successive_halving`;
            ``total`` None: it depends on the time left).

        Returns
        -------
        SearchResult

        Raises
        ------
        TansError
            If not fitted, a count is not positive, the zoo is empty, or no model fits the budget
            (the message names the smallest value available).
        """
        from tans.data import load_dataset

        self._check_fitted()
        for name, value in (("top_k", top_k), ("shortlist", shortlist), ("probe_k", probe_k)):
            _check_positive(name, value)
        if finetune_budget is not None:
            check_budget(finetune_budget)
        budget = {"max_params": max_params, "max_flops": max_flops, "max_latency_ms": max_latency_ms}
        if constraints is not None and any(v is not None for v in budget.values()):
            raise TansError("Give the budget either as constraints=Constraints(...) or as max_* keywords, not both.")
        constraints = constraints or Constraints(**budget)
        if isinstance(dataset, (str, os.PathLike)):
            dataset = load_dataset(str(dataset))
        if not isinstance(dataset, Dataset):
            raise TansError(f"search expects a Dataset or a dataset name/path, got {type(dataset).__name__}.")
        zoo = zoo if isinstance(zoo, Zoo) else Zoo.open(zoo)
        seconds: dict[str, float] = {}
        start = time.perf_counter()

        cache = self._zoo_cache(zoo)
        allowed = require_allowed(constraints, cache.params, cache.flops, cache.latency_ms)
        sample = query_sample(dataset, per_class=self.per_class, seed=self.seed)
        q = self._query_embedding(sample.images)
        seconds["encode"] = time.perf_counter() - start

        tic = time.perf_counter()
        n_allowed = int(allowed.sum())
        size = max(min(shortlist or max(4 * top_k, SHORTLIST), n_allowed), min(top_k, n_allowed))
        scores, pos = cache.index.search(q[None], size, allowed_ids=np.flatnonzero(allowed))
        keep = pos[0] >= 0
        sims, pos = scores[0][keep], pos[0][keep]
        seconds["retrieve"] = time.perf_counter() - tic

        tic = time.perf_counter()
        chance = 1.0 / max(dataset.num_classes, 1)
        stage1, stage1_order = self._stage1(q, cache, pos, chance)
        order = np.lexsort((-sims, -stage1_order))  # by expected accuracy, then similarity
        predicted = stage1.copy()
        seconds["rerank"] = time.perf_counter() - tic

        k = 0 if fast or self.combiner_ is None else min(probe_k or self.probe_k, len(order))
        probes: dict[str, np.ndarray] = {}
        top = order[:k]  # stage 2's models, in stage-1 order (the probe scores' order)
        if k > 0:
            tic = time.perf_counter()
            probes, probe_chance = self._probe(dataset, [cache.entries[p].id for p in pos[top]], zoo,
                                               progress=progress)
            features = fusion_features(stage1[top], chance, probes, probe_chance)
            predicted[top] = chance + (1.0 - chance) * self.combiner_.predict(features)
            fused = self.combiner_.decision(features)  # unclipped: the order
            order = np.concatenate([top[np.lexsort((-stage1_order[top], -fused))], order[k:]])
            seconds["probe"] = time.perf_counter() - tic

        tuned: dict[int, float] = {}
        trials = []
        if finetune_budget is not None:
            tic = time.perf_counter()
            head = order[: min(probe_k or self.probe_k or top_k, len(order))]
            at = {cache.entries[pos[j]].id: int(j) for j in head}
            caps = json.loads(self.records_.get("recipe") or "{}")  # the records' image caps: what stage 1 predicts
            caps = {k: caps[k] for k in ("max_train_images", "max_eval_images") if k in caps}
            ids, trials = successive_halving(
                dataset, list(at), zoo=zoo, budget_seconds=finetune_budget, seed=self.seed, **caps,
                progress=progress,
            )
            order = np.concatenate([[at[i] for i in ids], order[len(head):]]).astype(np.int64)
            tuned = {at[t.id]: t.val_acc for t in trials}  # the last rung's, as trials are in order
            seconds["finetune"] = time.perf_counter() - tic

        probed_at = {int(j): i for i, j in enumerate(top)}
        rows = []
        for rank, j in enumerate(order[:top_k]):
            entry = cache.entries[pos[j]]
            at = probed_at.get(int(j))
            rows.append(
                SearchRow(
                    rank=rank + 1,
                    id=entry.id,
                    arch=entry.arch,
                    task=entry.task,
                    similarity=float(sims[j]),
                    predicted_acc=float(predicted[j]),
                    stage1_acc=float(stage1[j]),
                    logme=None if at is None or "logme" not in probes else float(probes["logme"][at]),
                    ncm=None if at is None or "ncm" not in probes else float(probes["ncm"][at]),
                    finetune_val_acc=tuned.get(int(j)),
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
            query_images=len(sample),
            constraints=constraints.describe(),
            candidates=n_allowed,
            zoo_size=len(cache.entries),
            shortlist=len(pos),
            probed=k,
            finetunes=len(trials),
            seconds=seconds,
        )

    def _probe(self, dataset: Dataset, ids: list[str], zoo: Zoo, *,
               progress: Progress | None = None) -> tuple[dict[str, np.ndarray], float]:
        """Stage 2's probe scores of ``ids`` (in the given order) and the probe sample's chance level."""
        from tans.searcher.probe import probe_scores

        found = probe_scores(zoo, ids, dataset, per_class=self.probe_per_class, seed=self.seed, scores=self.combiner_.scores,
                             progress=progress)
        return {name: np.asarray(found.scores[name], dtype=np.float64) for name in self.combiner_.scores}, found.chance

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
            The artifact directory, for :meth:`load`.

        Raises
        ------
        TansError
            If not fitted or ``path`` is a file.
        """
        from tans import __version__

        self._check_fitted()
        sources = sorted(self.source_embeddings_)
        config = {
            "tans_version": __version__,
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "params": {k: list(v) if isinstance(v, tuple) else v for k, v in self.get_params().items()},
            "extractor": self.extractor_.config(),
            "meta_train": self.result_.to_dict(),
            "records": self.records_,
            "combiner": None if self.combiner_ is None else self.combiner_.to_dict(),
            "track_record": {"blend": None if self.stage1_blend_ is None else self.stage1_blend_.to_dict(),
                             "models": [] if self.track_record_ is None else self.track_record_.model_ids},
            "source_fingerprints": sources,
            "zoo": self.zoo_info_,
        }
        tensors = {f"extractor.{k}": v for k, v in self.extractor_.state_dict().items()}
        tensors.update({f"net.{k}": v for k, v in self.net_.state_dict().items()})
        if self.track_record_ is not None:
            tensors["track_record.standings"] = torch.from_numpy(self.track_record_.z)
        if sources:
            tensors["sources.embeddings"] = torch.from_numpy(np.stack([self.source_embeddings_[fp] for fp in sources]))
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
            params = dict(config["params"])
            params["probe_scores"] = tuple(params.get("probe_scores", ()))
            params.setdefault("rank_within_budgets", False)  # fitted before the option: ranked every candidate
            params.setdefault("use_track_record", False)  # fitted before track records: the predictor alone
            searcher = cls(**params)
            ext_cfg = dict(config["extractor"])
            ext_state = {k[len("extractor.") :]: v for k, v in tensors.items() if k.startswith("extractor.")}
            extractor = make_extractor(ext_cfg.pop("name"), state_dict=ext_state or None, **ext_cfg)
            net = searcher._new_net(extractor.dim)
            net.load_state_dict({k[len("net.") :]: v for k, v in tensors.items() if k.startswith("net.")})
            fps = config["source_fingerprints"]
            matrix = tensors["sources.embeddings"].numpy() if fps else np.zeros((0, searcher.embed_dim), np.float32)
            if len(matrix) != len(fps):
                raise KeyError("sources.embeddings does not match source_fingerprints")
            combiner = ProbeCombiner.from_dict(config["combiner"]) if config.get("combiner") else None
            tracked = config.get("track_record") or {}
            blend = TrackRecordBlend.from_dict(tracked["blend"]) if tracked.get("blend") else None
            models = tracked.get("models") or []
            if blend is None:
                records = None
            elif isinstance(models, dict):  # saved before target weights: one standing per model, counted once
                records = Standings([str(k) for k in models], np.array([list(models.values())], dtype=np.float64))
            else:
                records = Standings([str(k) for k in models], tensors["track_record.standings"].double().numpy())
                if records.z.shape[1] != len(models):
                    raise KeyError("track_record.standings does not match track_record.models")
        except (KeyError, TypeError, RuntimeError, ValueError) as exc:
            raise TansError(f"The searcher at '{path}' is inconsistent ({type(exc).__name__}: {exc}); re-run `tans meta-train`.") from None
        searcher.extractor_ = extractor
        searcher.net_ = net.eval()
        searcher.combiner_ = combiner
        searcher.stage1_blend_ = blend
        searcher.track_record_ = records
        searcher.source_embeddings_ = {fp: matrix[i] for i, fp in enumerate(fps)}
        meta = config.get("meta_train", {})
        searcher.result_ = MetaTrainResult(
            history=[_epoch_from_dict(h) for h in meta.get("history", [])],
            best_epoch=meta.get("best_epoch", 0),
            train_targets=meta.get("train_targets", []),
            val_targets=meta.get("val_targets", []),
            seconds=meta.get("seconds", 0.0),
            stopped_early=meta.get("stopped_early", False),
        )
        searcher.records_ = config.get("records", {})
        searcher.zoo_info_ = config.get("zoo", {})
        return searcher


def _epoch_from_dict(values: dict) -> EpochLog:
    return EpochLog(**{k: (math.nan if v is None else v) for k, v in values.items()})
