"""Query encoder (a dataset -> a unit vector) and model encoder (a zoo entry -> a unit vector).

Both map into the same ``embed_dim``-wide space, where cosine similarity should be high between a
dataset and the networks that do well on it.

- :class:`QueryEncoder`: frozen image features of a class-balanced sample -> a set encoder
  (attention pooling or mean pooling, :func:`tans.searcher.make_set_encoder`) -> unit vector. The
  set encoder makes it invariant to the order of the images.
- :class:`ModelEncoder`: the entry's architecture encoding (one-hot per choice, inactive blocks
  masked, :meth:`tans.space.Arch.encode`; zeros plus a flag for timm models), its cost (log
  parameters and FLOPs), how well it learned its source task, the *source task's* query embedding
  (the same query encoder applied to the source data) and, optionally, its functional embedding
  -> MLP -> unit vector. It reads only an entry's metadata and its source data, so entries added
  to the zoo after meta-training, even on new source tasks, are embedded with no retraining.
- :class:`SearcherNet` also holds the performance predictor: ``predicted_acc = chance + (1 -
  chance) * sigmoid(f(q, m))``, the expected test accuracy after the records' fine-tuning recipe.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from tans._errors import TansError
from tans.searcher.set_encoder import make_set_encoder
from tans.space.arch import encoding_size
from tans.space.functional import EMBEDDING_SIZE, PROBE_DIM, PROBE_IMAGES
from tans.zoo.entry import ZooEntry

__all__ = ["QueryEncoder", "ModelEncoder", "SearcherNet", "ARCH_FEATURES", "STATIC_FEATURES", "model_inputs"]

#: Architecture features: the space's one-hot encoding plus one "not of the space" flag.
ARCH_FEATURES = encoding_size() + 1
#: Static model features: architecture, cost (log10 params and FLOPs, centred) and source quality
#: (validation accuracy and its fraction of the way from chance to perfect).
STATIC_FEATURES = ARCH_FEATURES + 4


class QueryEncoder(nn.Module):
    """Set of image features -> unit vector.

    Parameters
    ----------
    in_dim : int
        Width of the frozen image features.
    embed_dim : int
        Output width.
    set_encoder : str
        ``"attention"`` or ``"mean"``. Attention uses induced self-attention (ISAB, 16 inducing
        points): a 50-class task sampled at 20 per class is a set of 1,000 images, and full
        self-attention over it made meta-training on a 300-model zoo take tens of minutes.
    """

    INDUCING_POINTS = 16

    def __init__(self, in_dim: int, embed_dim: int = 128, *, set_encoder: str = "attention") -> None:
        super().__init__()
        options = {"num_inducing": self.INDUCING_POINTS} if set_encoder == "attention" else {}
        self.encoder = make_set_encoder(set_encoder, in_dim, embed_dim, **options)
        # Frozen features are unit vectors whose entries differ from dataset to dataset by a few
        # hundredths: standardised per dimension (statistics of the meta-training pools), the
        # differences survive the encoder's normalisation layers instead of collapsing every
        # dataset onto one embedding.
        self.register_buffer("feature_mean", torch.zeros(in_dim))
        self.register_buffer("feature_scale", torch.ones(in_dim))

    @torch.no_grad()
    def fit_standardization(self, features: torch.Tensor) -> None:
        """Set the per-dimension mean and scale from ``(n, in_dim)`` features of the training pools."""
        self.feature_mean.copy_(features.mean(dim=0))
        self.feature_scale.copy_(features.std(dim=0).clamp(min=1e-6))

    def forward(self, features: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """``(batch, set_size, in_dim)`` features (``mask`` (batch, set_size), True = present) -> ``(batch, embed_dim)``."""
        return self.encoder((features - self.feature_mean) / self.feature_scale, mask)


@lru_cache(maxsize=65536)
def _arch_features(arch: str) -> np.ndarray:
    from tans.space.registry import resolve_arch

    try:
        parsed = resolve_arch(arch)
    except TansError:
        parsed = None  # an imported model the registry does not know: treated like a timm model
    out = np.zeros(ARCH_FEATURES, dtype=np.float32)
    if parsed is None:
        out[-1] = 1.0
    else:
        out[:-1] = parsed.encode()
    out.setflags(write=False)
    return out


def model_inputs(entries: Sequence[ZooEntry]) -> tuple[np.ndarray, np.ndarray]:
    """The model encoder's inputs for zoo entries (all but the source embedding).

    Parameters
    ----------
    entries : sequence of ZooEntry
        Any entries.

    Returns
    -------
    static : np.ndarray
        ``(n, STATIC_FEATURES)`` float32: architecture encoding (last column: not of the space),
        then ``log10(params) - 5``, ``log10(flops) - 7``, source ``val_acc`` and
        ``(val_acc - chance) / (1 - chance)``.
    functional : np.ndarray
        ``(n, EMBEDDING_SIZE)`` float32 functional embeddings, each probe image's 128 activations
        L2-normalised (so networks of different scale compare).

    Raises
    ------
    TansError
        If an entry's functional embedding does not have ``EMBEDDING_SIZE`` values.
    """
    static = np.zeros((len(entries), STATIC_FEATURES), dtype=np.float32)
    functional = np.zeros((len(entries), EMBEDDING_SIZE), dtype=np.float32)
    for i, entry in enumerate(entries):
        if entry.embedding.shape != (EMBEDDING_SIZE,):
            raise TansError(
                f"entry {entry.id}: expected a functional embedding of {EMBEDDING_SIZE} values (16 probe images x "
                f"128), got {entry.embedding.shape[0]}; recompute it with tans.space.functional_embedding."
            )
        static[i, :ARCH_FEATURES] = _arch_features(entry.arch)
        lift = (entry.val_acc - entry.chance_acc) / max(1.0 - entry.chance_acc, 1e-6)
        static[i, ARCH_FEATURES:] = (
            np.log10(max(entry.params, 1)) - 5.0,
            np.log10(max(entry.flops, 1)) - 7.0,
            entry.val_acc,
            lift,
        )
        per_image = entry.embedding.reshape(PROBE_IMAGES, PROBE_DIM)
        norms = np.linalg.norm(per_image, axis=1, keepdims=True)
        functional[i] = (per_image / np.maximum(norms, 1e-8)).reshape(-1)
    return static, functional


class ModelEncoder(nn.Module):
    """Static features (+ source embedding, + functional embedding) -> MLP -> unit vector.

    Parameters
    ----------
    embed_dim : int
        Output width (also the width of the source embedding it reads).
    use_functional : bool
        Join the functional embedding.
    use_source : bool
        Join the source task's query embedding.
    hidden_dim : int
        Width of the MLP.
    dropout : float
        Dropout after each hidden layer (the records are few: regularise).
    """

    def __init__(
        self,
        embed_dim: int = 128,
        *,
        use_functional: bool = False,
        use_source: bool = True,
        hidden_dim: int = 128,
        dropout: float = 0.1,
    ) -> None:
        super().__init__()
        self.use_functional = use_functional
        self.use_source = use_source
        self.static_map = nn.Sequential(nn.Linear(STATIC_FEATURES, hidden_dim), nn.GELU())
        # the 2048-d functional embedding is reduced first so it does not swamp the static bits
        self.functional_map = nn.Sequential(nn.Linear(EMBEDDING_SIZE, hidden_dim), nn.GELU()) if use_functional else None
        self.source_map = nn.Sequential(nn.Linear(embed_dim, hidden_dim), nn.GELU()) if use_source else None
        width = hidden_dim * (1 + use_functional + use_source)
        self.mlp = nn.Sequential(nn.Dropout(dropout), nn.Linear(width, hidden_dim), nn.GELU(), nn.Dropout(dropout),
                                 nn.Linear(hidden_dim, embed_dim))

    def forward(
        self, static: torch.Tensor, functional: torch.Tensor | None = None, source: torch.Tensor | None = None
    ) -> torch.Tensor:
        """``(n, STATIC_FEATURES)``, ``(n, EMBEDDING_SIZE)`` and ``(n, embed_dim)`` inputs -> ``(n, embed_dim)``."""
        parts = [self.static_map(static)]
        if self.functional_map is not None:
            if functional is None:
                raise TansError("This model encoder uses functional embeddings; pass them too.")
            parts.append(self.functional_map(functional))
        if self.source_map is not None:
            if source is None:
                raise TansError("This model encoder uses source-task embeddings; pass them too.")
            parts.append(self.source_map(source))
        return F.normalize(self.mlp(torch.cat(parts, dim=-1)), dim=-1)


class SearcherNet(nn.Module):
    """The learned part of the searcher: query encoder, model encoder and performance predictor.

    Parameters
    ----------
    feature_dim : int
        Width of the frozen image features.
    embed_dim : int
        Width of the shared latent space.
    set_encoder : str
        ``"attention"`` or ``"mean"``.
    hidden_dim : int
        Width of the model encoder and predictor.
    dropout : float
        Dropout of the model encoder and predictor.
    **model_inputs : bool
        ``use_functional``, ``use_source``: which optional inputs the model encoder reads
        (default: :class:`ModelEncoder`'s).
    """

    def __init__(
        self,
        feature_dim: int,
        embed_dim: int = 128,
        *,
        set_encoder: str = "attention",
        hidden_dim: int = 128,
        dropout: float = 0.1,
        **model_inputs: bool,
    ) -> None:
        super().__init__()
        from tans.searcher.predictor import PerformancePredictor

        self.query = QueryEncoder(feature_dim, embed_dim, set_encoder=set_encoder)
        self.model = ModelEncoder(embed_dim, hidden_dim=hidden_dim, dropout=dropout, **model_inputs)
        self.predictor = PerformancePredictor(embed_dim, hidden_dim=hidden_dim, dropout=dropout)

    def encode_models(
        self, static: torch.Tensor, functional: torch.Tensor, source: torch.Tensor | None = None
    ) -> torch.Tensor:
        """``(n, embed_dim)`` unit embeddings of models (inputs from :func:`model_inputs`)."""
        return self.model(
            static,
            functional if self.model.use_functional else None,
            source if self.model.use_source else None,
        )

    def predict(self, q: torch.Tensor, m: torch.Tensor, chance: torch.Tensor) -> torch.Tensor:
        """``(D, M)`` expected test accuracy of every model ``m`` (M, e) on every dataset ``q`` (D, e).

        ``chance`` (D,) is each dataset's chance level: the prediction lies between it and 1.
        """
        lift = torch.sigmoid(self.predictor.forward_logits(q[:, None, :], m[None, :, :]))
        return chance[:, None] + (1.0 - chance[:, None]) * lift
