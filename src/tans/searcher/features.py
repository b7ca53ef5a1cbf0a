"""Frozen image feature extractors for the query encoder, chosen by name.

Two kinds of name are understood by :func:`make_extractor`:

* ``"tans-default"``: a small CNN (four conv-BN-ReLU stages, 16-32-64-128 channels, 32x32 input)
  that :func:`train_default_extractor` trains multi-task on the meta-training tasks (one shared
  trunk, one linear head per task, a few epochs on class-balanced samples) and that is then frozen
  and saved inside the searcher artifact. It needs no download, costs about 4 M multiply-adds per
  image, and so keeps one search well under a second on a laptop CPU.
* ``"timm/<name>"``: any timm model with its pretrained weights, used as a frozen extractor at the
  model's pretrained input size. The weights must already be in the local Hugging Face cache (this
  tool never assumes a network); otherwise a :class:`TansError` says so.

Every extractor maps uint8 images ``(n, h, w, c)`` to L2-normalised ``(n, dim)`` float32 features
(pooled penultimate activations).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from tans._errors import TansError
from tans.data.dataset import Dataset
from tans.data.sampling import balanced_indices
from tans.data.transforms import resize_images
from tans.progress import Progress, emit
from tans.training.loop import to_input

__all__ = [
    "DEFAULT_EXTRACTOR",
    "FeatureExtractor",
    "DefaultExtractor",
    "TimmExtractor",
    "make_extractor",
    "train_default_extractor",
    "query_sample",
]

DEFAULT_EXTRACTOR = "tans-default"
_TIMM_PREFIX = "timm/"
_BATCH = 256  # images per forward pass while extracting


def query_sample(dataset: Dataset, *, per_class: int, seed: int = 0, split: str | None = "train") -> Dataset:
    """A class-balanced sample of up to ``per_class`` images per class.

    Parameters
    ----------
    dataset : Dataset
        Any dataset.
    per_class : int
        Images per class (a class with fewer contributes all it has).
    seed : int
        Seed of the draw.
    split : str or None
        Draw from this split (``"train"`` by default: the test images stay unseen); ``None`` draws
        from the whole dataset.

    Returns
    -------
    Dataset
        The sample, grouped by class.
    """
    pool = dataset.splits()[split] if split is not None else np.arange(len(dataset))
    if pool.size == 0:
        pool = np.arange(len(dataset))
    keep = pool[balanced_indices(dataset.labels[pool], per_class, seed)]
    return dataset.subset(keep)


class FeatureExtractor:
    """Frozen images -> features map; subclasses provide :meth:`_forward` and the fields below.

    Attributes
    ----------
    name : str
        The name :func:`make_extractor` understands.
    dim : int
        Feature width.
    image_size : int
        Input resolution; images are resized to it (3 channels).
    """

    name: str
    dim: int
    image_size: int
    module: nn.Module

    def _forward(self, x: torch.Tensor) -> torch.Tensor:  # (b, 3, s, s) -> (b, dim)
        raise NotImplementedError

    def _prepare(self, images: np.ndarray) -> np.ndarray:
        if images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] not in (1, 3):
            raise TansError(f"Expected uint8 images (n, h, w, 1 or 3), got {images.dtype} {images.shape}.")
        if images.shape[1:] != (self.image_size, self.image_size, 3):
            images = resize_images(images, self.image_size, 3)
        return images

    @torch.no_grad()
    def __call__(self, images: np.ndarray, *, device: torch.device | str = "cpu") -> np.ndarray:
        """Features of ``images``.

        Parameters
        ----------
        images : np.ndarray
            ``(n, h, w, c)`` uint8, any size, 1 or 3 channels.
        device : torch.device or str
            Where to run.

        Returns
        -------
        np.ndarray
            ``(n, dim)`` float32, unit rows.
        """
        images = self._prepare(images)
        self.module.to(device).eval()
        out = []
        for start in range(0, len(images), _BATCH):
            x = self._input(images[start : start + _BATCH], device)
            out.append(F.normalize(self._forward(x).float(), dim=-1).cpu())
        if not out:
            return np.zeros((0, self.dim), dtype=np.float32)
        return torch.cat(out).numpy()

    def _input(self, images: np.ndarray, device) -> torch.Tensor:
        return to_input(images, device)

    def config(self) -> dict:
        """JSON-able description saved in the searcher artifact."""
        return {"name": self.name, "dim": self.dim, "image_size": self.image_size}

    def state_dict(self) -> dict[str, torch.Tensor]:
        """Weights to ship inside the artifact (empty when they come from elsewhere)."""
        return {}


# ------------------------------------------------------------------------------- tans-default
class _Trunk(nn.Module):
    """Four conv-BN-ReLU stages with max-pooling, global average pool: (b, 3, 32, 32) -> (b, 128)."""

    def __init__(self, widths: Sequence[int]) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        cin = 3
        for i, w in enumerate(widths):
            layers += [nn.Conv2d(cin, w, 3, padding=1, bias=False), nn.BatchNorm2d(w), nn.ReLU(inplace=True)]
            if i < len(widths) - 1:
                layers.append(nn.MaxPool2d(2))
            cin = w
        self.body = nn.Sequential(*layers)
        self.num_features = cin

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x).mean(dim=(2, 3))  # (b, num_features)


class DefaultExtractor(FeatureExtractor):
    """The offline extractor trained by :func:`train_default_extractor`.

    Parameters
    ----------
    widths : sequence of int
        Channels of the four stages; the last is the feature width.
    image_size : int
        Input resolution.
    """

    def __init__(self, *, widths: Sequence[int] = (16, 32, 64, 128), image_size: int = 32) -> None:
        self.name = DEFAULT_EXTRACTOR
        self.widths = tuple(int(w) for w in widths)
        self.image_size = int(image_size)
        self.module = _Trunk(self.widths)
        self.dim = self.module.num_features

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.module(x)

    def config(self) -> dict:
        return {**super().config(), "widths": list(self.widths)}

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {k: v.detach().cpu().contiguous() for k, v in self.module.state_dict().items()}


def train_default_extractor(
    tasks: Sequence[Dataset],
    *,
    epochs: int = 3,
    per_class: int = 40,
    max_per_task: int = 800,
    lr: float = 3e-3,
    batch_size: int = 64,
    seed: int = 0,
    device: torch.device | str = "cpu",
    progress: Progress | None = None,
) -> DefaultExtractor:
    """Train the default extractor multi-task on the meta-training tasks, then freeze it.

    Each task contributes a class-balanced sample of its training split (``per_class`` images per
    class, at most ``max_per_task``) and gets its own linear head on the shared trunk; a step
    takes one batch of one task, the tasks interleaved at random. The learning rate follows a
    cosine over epochs (constant within an epoch).

    Parameters
    ----------
    tasks : sequence of Dataset
        Meta-training tasks (any resolution; resized to 32x32 RGB).
    epochs : int
        Passes over the samples.
    per_class, max_per_task : int
        Sample size per class and cap per task.
    lr : float
        Peak AdamW learning rate.
    batch_size : int
        Images per step.
    seed : int
        Seeds initialisation, samples and order.
    device : torch.device or str
        Where to train.
    progress : Progress, optional
        Receives a :class:`~tans.progress.ProgressEvent` of stage ``"extractor"`` after each epoch
        (``done`` epochs of ``epochs``).

    Returns
    -------
    DefaultExtractor
        Frozen (eval mode, no gradients).

    Raises
    ------
    TansError
        If no task is given or ``epochs < 1``.
    """
    if not tasks:
        raise TansError("The default feature extractor needs at least one meta-training task.")
    if epochs < 1:
        raise TansError(f"extractor epochs must be at least 1, got {epochs}.")
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    extractor = DefaultExtractor()
    trunk = extractor.module.to(device)
    data = []
    for t, task in enumerate(tasks):
        cap = max(1, min(per_class, max_per_task // max(task.num_classes, 1)))
        sample = query_sample(task, per_class=cap, seed=seed + t)
        images = extractor._prepare(sample.images)
        data.append((to_input(images, device), torch.as_tensor(sample.labels, device=device)))
    heads = nn.ModuleList(nn.Linear(extractor.dim, task.num_classes) for task in tasks).to(device)
    params = list(trunk.parameters()) + list(heads.parameters())
    optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=1e-4)
    trunk.train()
    for epoch in range(epochs):
        for group in optimizer.param_groups:  # one learning rate per epoch
            group["lr"] = lr * 0.5 * (1.0 + math.cos(math.pi * epoch / epochs))
        batches = [(t, idx) for t, (x, _) in enumerate(data) for idx in torch.randperm(len(x)).split(batch_size)]
        for b in rng.permutation(len(batches)):
            t, idx = batches[b]
            if len(idx) < 2:
                continue  # BatchNorm needs two images
            x, y = data[t]
            logits = heads[t](trunk(x[idx]))
            loss = F.cross_entropy(logits, y[idx], label_smoothing=0.1)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        emit(progress, "extractor", epoch + 1, epochs)
    trunk.eval().requires_grad_(False)
    trunk.to("cpu")
    return extractor


# ------------------------------------------------------------------------------------- timm
class TimmExtractor(FeatureExtractor):
    """A timm model with pretrained weights, frozen; pooled pre-logits features.

    Parameters
    ----------
    name : str
        ``"timm/<architecture>"``.
    image_size : int, optional
        Input resolution; default the model's pretrained input size.

    Raises
    ------
    TansError
        If the architecture is unknown or its pretrained weights are not available locally.
    """

    def __init__(self, name: str, *, image_size: int | None = None) -> None:
        from tans.space.registry import create_model

        self.name = name
        try:
            model = create_model(name, num_classes=0, pretrained=True)
        except TansError as exc:
            raise TansError(
                f"Feature extractor '{name}' needs timm's pretrained weights, which cannot be loaded here "
                f"(they are not in the local Hugging Face cache and nothing is downloaded): {exc}. "
                f"Copy the weights into the cache, or use the offline '{DEFAULT_EXTRACTOR}' extractor."
            ) from None
        cfg = model.pretrained_cfg
        self.image_size = int(image_size or cfg.get("input_size", (3, 224, 224))[-1])
        self.mean = torch.tensor(cfg.get("mean", (0.485, 0.456, 0.406))).view(1, 3, 1, 1)
        self.std = torch.tensor(cfg.get("std", (0.229, 0.224, 0.225))).view(1, 3, 1, 1)
        self.module = model.eval().requires_grad_(False)
        self.dim = int(model.num_features)

    def _input(self, images: np.ndarray, device) -> torch.Tensor:
        x = torch.from_numpy(np.ascontiguousarray(images)).to(device).permute(0, 3, 1, 2).float() / 255.0
        return (x - self.mean.to(device)) / self.std.to(device)

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.module.forward_head(self.module.forward_features(x), pre_logits=True)


def make_extractor(name: str, *, state_dict: dict[str, torch.Tensor] | None = None, **config) -> FeatureExtractor:
    """Build an extractor by name.

    Parameters
    ----------
    name : str
        ``"tans-default"`` or ``"timm/<architecture>"``.
    state_dict : dict, optional
        Trained weights of ``"tans-default"`` (from the artifact).
    **config
        The rest of :meth:`FeatureExtractor.config` (``widths``, ``image_size``); ``dim`` is ignored.

    Returns
    -------
    FeatureExtractor

    Raises
    ------
    TansError
        For an unknown name, or timm weights that cannot be loaded.
    """
    config.pop("dim", None)
    if name == DEFAULT_EXTRACTOR:
        extractor = DefaultExtractor(**config)
        if state_dict is not None:
            extractor.module.load_state_dict(state_dict)
        extractor.module.eval().requires_grad_(False)
        return extractor
    if isinstance(name, str) and name.startswith(_TIMM_PREFIX):
        return TimmExtractor(name, image_size=config.get("image_size"))
    raise TansError(
        f"Unknown feature extractor '{name}': expected '{DEFAULT_EXTRACTOR}' or 'timm/<architecture>' "
        "(e.g. 'timm/resnet18')."
    )

