"""Permutation-invariant set encoders: a set of image features -> one unit vector.

The query encoder sees a dataset as a *set* of sampled images, so its output must not depend on
their order. Two encoders share one interface, ``forward(x, mask=None) -> (batch, out_dim)``:

- :class:`AttentionPooling`, in the style of the Set Transformer (Lee et al., ICML 2019): an input
  map, optional self-attention blocks (SAB, or ISAB with inducing points for large sets), then
  pooling by multi-head attention (PMA) from a learned seed.
- :class:`MeanPooling`, a DeepSets encoder (per-element MLP, masked mean, MLP), close to the
  paper's mean-pooled query encoder.

``mask`` marks the real elements of padded sets: ``(batch, set_size)`` bool, True = present.
Padded elements have no effect on the output. Outputs are L2-normalised.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from tans._errors import TansError, did_you_mean

__all__ = ["AttentionPooling", "MeanPooling", "make_set_encoder", "list_set_encoders"]


def _check_input(x: torch.Tensor, mask: torch.Tensor | None, in_dim: int) -> torch.Tensor | None:
    """Validate ``x`` (batch, set_size, in_dim) and ``mask``; return the mask as bool or None."""
    if x.dim() != 3 or x.shape[-1] != in_dim:
        raise TansError(f"Set encoder expects features of shape (batch, set_size, {in_dim}), got {tuple(x.shape)}.")
    if x.shape[1] == 0:
        raise TansError("Set encoder got empty sets (set_size 0); sample at least one image per dataset.")
    if mask is None:
        return None
    if mask.shape != x.shape[:2]:
        raise TansError(f"mask must have shape {tuple(x.shape[:2])} (batch, set_size), got {tuple(mask.shape)}.")
    mask = mask.to(device=x.device, dtype=torch.bool)
    if not mask.any(dim=1).all():
        raise TansError("Every set needs at least one present element; a mask row is all False.")
    return mask


class _MAB(nn.Module):
    """Multihead attention block: ``H = LN(X + Att(X, Y)); out = LN(H + FF(H))``."""

    def __init__(self, dim: int, num_heads: int, dropout: float) -> None:
        super().__init__()
        self.attn = nn.MultiheadAttention(dim, num_heads, dropout=dropout, batch_first=True)
        self.norm1 = nn.LayerNorm(dim)
        self.ff = nn.Sequential(nn.Linear(dim, 2 * dim), nn.GELU(), nn.Linear(2 * dim, dim))
        self.norm2 = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor, y: torch.Tensor, y_mask: torch.Tensor | None) -> torch.Tensor:
        # x: (batch, nq, dim) queries; y: (batch, nk, dim) keys/values; y_mask: (batch, nk) True = present
        pad = None if y_mask is None else ~y_mask
        attended, _ = self.attn(x, y, y, key_padding_mask=pad, need_weights=False)
        h = self.norm1(x + attended)
        return self.norm2(h + self.ff(h))


class _SAB(nn.Module):
    """Self-attention block: permutation-equivariant, cost quadratic in the set size."""

    def __init__(self, dim: int, num_heads: int, dropout: float) -> None:
        super().__init__()
        self.mab = _MAB(dim, num_heads, dropout)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        return self.mab(x, x, mask)


class _ISAB(nn.Module):
    """Induced self-attention: attend through ``num_inducing`` learned points, linear in set size."""

    def __init__(self, dim: int, num_heads: int, num_inducing: int, dropout: float) -> None:
        super().__init__()
        self.inducing = nn.Parameter(torch.randn(1, num_inducing, dim) * dim**-0.5)
        self.mab1 = _MAB(dim, num_heads, dropout)
        self.mab2 = _MAB(dim, num_heads, dropout)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        h = self.mab1(self.inducing.expand(x.shape[0], -1, -1), x, mask)  # (batch, num_inducing, dim)
        return self.mab2(x, h, None)  # (batch, set_size, dim)


class AttentionPooling(nn.Module):
    """Set Transformer encoder: input map, optional SAB/ISAB blocks, PMA with one learned seed.

    Parameters
    ----------
    in_dim : int
        Feature dimension of each set element.
    out_dim : int
        Output dimension (L2-normalised).
    hidden_dim : int
        Width of the attention blocks (divisible by ``num_heads``).
    num_heads : int
        Attention heads.
    num_blocks : int
        Self-attention blocks before pooling (0 = pool the mapped features directly).
    num_inducing : int, optional
        Use ISAB blocks with this many inducing points instead of SAB (for large sets).
    dropout : float
        Dropout inside attention.
    """

    def __init__(
        self,
        in_dim: int,
        out_dim: int = 128,
        *,
        hidden_dim: int = 128,
        num_heads: int = 4,
        num_blocks: int = 1,
        num_inducing: int | None = None,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        if hidden_dim % num_heads:
            raise TansError(f"hidden_dim ({hidden_dim}) must be divisible by num_heads ({num_heads}).")
        self.in_dim, self.out_dim = in_dim, out_dim
        self.input_map = nn.Sequential(nn.Linear(in_dim, hidden_dim), nn.GELU(), nn.Linear(hidden_dim, hidden_dim))
        self.blocks = nn.ModuleList(
            _ISAB(hidden_dim, num_heads, num_inducing, dropout) if num_inducing else _SAB(hidden_dim, num_heads, dropout)
            for _ in range(num_blocks)
        )
        self.seed = nn.Parameter(torch.randn(1, 1, hidden_dim) * hidden_dim**-0.5)
        self.pool = _MAB(hidden_dim, num_heads, dropout)
        self.head = nn.Linear(hidden_dim, out_dim)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """Encode sets.

        Parameters
        ----------
        x : torch.Tensor
            ``(batch, set_size, in_dim)`` features.
        mask : torch.Tensor, optional
            ``(batch, set_size)`` bool, True for present elements; None = all present.

        Returns
        -------
        torch.Tensor
            ``(batch, out_dim)`` unit vectors.
        """
        mask = _check_input(x, mask, self.in_dim)
        h = self.input_map(x)  # (batch, set_size, hidden)
        for block in self.blocks:
            h = block(h, mask)
        pooled = self.pool(self.seed.expand(x.shape[0], -1, -1), h, mask)  # (batch, 1, hidden)
        return F.normalize(self.head(pooled[:, 0]), dim=-1)


class MeanPooling(nn.Module):
    """DeepSets encoder: per-element MLP, masked mean, MLP.

    ``in_dim`` and ``out_dim`` as for :class:`AttentionPooling`; ``hidden_dim`` is the MLPs' width.
    """

    def __init__(self, in_dim: int, out_dim: int = 128, *, hidden_dim: int = 256) -> None:
        super().__init__()
        self.in_dim, self.out_dim = in_dim, out_dim
        self.phi = nn.Sequential(nn.Linear(in_dim, hidden_dim), nn.GELU(), nn.Linear(hidden_dim, hidden_dim))
        self.rho = nn.Sequential(nn.GELU(), nn.Linear(hidden_dim, out_dim))

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """Encode sets; same contract as :meth:`AttentionPooling.forward`."""
        mask = _check_input(x, mask, self.in_dim)
        h = self.phi(x)  # (batch, set_size, hidden)
        if mask is None:
            pooled = h.mean(dim=1)
        else:
            weights = mask.to(h.dtype).unsqueeze(-1)  # (batch, set_size, 1)
            pooled = (h * weights).sum(dim=1) / weights.sum(dim=1)
        return F.normalize(self.rho(pooled), dim=-1)


_SET_ENCODERS: dict[str, type[nn.Module]] = {"attention": AttentionPooling, "mean": MeanPooling}


def list_set_encoders() -> list[str]:
    """Names accepted by :func:`make_set_encoder`."""
    return sorted(_SET_ENCODERS)


def make_set_encoder(name: str, in_dim: int, out_dim: int = 128, **kwargs) -> nn.Module:
    """Build a set encoder by name.

    Parameters
    ----------
    name : str
        ``"attention"`` (:class:`AttentionPooling`) or ``"mean"`` (:class:`MeanPooling`).
    in_dim : int
        Feature dimension of each set element.
    out_dim : int
        Output dimension.
    **kwargs
        Keyword options of the chosen class (e.g. ``num_blocks``, ``hidden_dim``).

    Returns
    -------
    torch.nn.Module
        The encoder; ``forward(x, mask=None) -> (batch, out_dim)`` unit vectors.

    Raises
    ------
    TansError
        If the name is unknown or an option does not apply to that encoder.
    """
    if name not in _SET_ENCODERS:
        raise TansError(
            f"Unknown set encoder '{name}'. Expected one of {', '.join(list_set_encoders())}."
            + did_you_mean(name, _SET_ENCODERS)
        )
    try:
        return _SET_ENCODERS[name](in_dim, out_dim, **kwargs)
    except TypeError as exc:
        raise TansError(f"Bad option for set encoder '{name}': {exc}.") from None
