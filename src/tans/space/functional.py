"""Functional embedding: what a network computes on one fixed, documented probe input.

The probe is ``PROBE_IMAGES`` = 16 images of 32x32 RGB made from seed 0 (:func:`probe_images`):
images 0-7 are smooth noise (uniform noise on a 4x4 grid, bilinearly upsampled), images 8-15
are sharp-edged patterns (random noise on an 8x8 grid, nearest-neighbour upsampled), each scaled to
the full 0..255 range. They pass through the same normalisation as training images
(:func:`tans.training.loop.to_input`), then through the model in eval mode;
``forward_head(forward_features(x), pre_logits=True)`` gives ``(16, F)`` penultimate
activations. Networks of the space have F = 128; for other widths (timm models) the features are
average-pooled along the feature axis to 128. The embedding is the ``(16, 128)`` matrix flattened
image by image: ``EMBEDDING_SIZE`` = 2048 float32 values, the same for every architecture.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from tans.training.loop import to_input

__all__ = ["probe_images", "functional_embedding", "EMBEDDING_SIZE", "PROBE_IMAGES", "PROBE_DIM", "PROBE_SEED"]

PROBE_IMAGES = 16
PROBE_DIM = 128
PROBE_SEED = 0
EMBEDDING_SIZE = PROBE_IMAGES * PROBE_DIM


@lru_cache(maxsize=4)
def _probe(size: int) -> np.ndarray:
    rng = np.random.default_rng(PROBE_SEED)
    half = PROBE_IMAGES // 2
    smooth = torch.from_numpy(rng.random((half, 3, 4, 4), dtype=np.float32))
    sharp = torch.from_numpy(rng.random((PROBE_IMAGES - half, 3, 8, 8), dtype=np.float32))
    smooth = F.interpolate(smooth, size=(size, size), mode="bilinear", align_corners=False)
    sharp = F.interpolate(sharp, size=(size, size), mode="nearest")
    x = torch.cat([smooth, sharp])  # (16, 3, size, size)
    lo = x.amin((1, 2, 3), keepdim=True)
    hi = x.amax((1, 2, 3), keepdim=True)
    x = (x - lo) / (hi - lo) * 255.0
    out = x.round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()
    out.setflags(write=False)
    return out


def probe_images(size: int = 32) -> np.ndarray:
    """The fixed probe: ``(16, size, size, 3)`` uint8, identical on every machine and run."""
    return _probe(size).copy()


@torch.no_grad()
def functional_embedding(model: nn.Module, *, size: int = 32) -> np.ndarray:
    """Penultimate activations of ``model`` on the fixed probe, as one vector.

    Parameters
    ----------
    model : nn.Module
        Any model with timm's ``forward_features`` / ``forward_head(pre_logits=True)``.
    size : int
        Probe resolution (the zoo's working resolution).

    Returns
    -------
    np.ndarray
        ``(EMBEDDING_SIZE,)`` float32 = 16 probe images x 128 features, flattened image by image.
    """
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    try:
        x = to_input(_probe(size), device)
        feats = model.forward_head(model.forward_features(x), pre_logits=True)
    finally:
        model.train(was_training)
    feats = feats.float().reshape(PROBE_IMAGES, -1)  # (16, F)
    if feats.shape[1] != PROBE_DIM:
        feats = F.adaptive_avg_pool1d(feats[:, None, :], PROBE_DIM)[:, 0, :]  # (16, 128)
    return feats.cpu().numpy().reshape(-1).astype(np.float32)
