"""Performance predictor: accuracy of a model on a dataset, from their embeddings.

Used to re-rank the candidates retrieved by similarity. Input features are the query embedding,
the model embedding and their element-wise product (the product lets a small MLP express
similarity directly); the output is a sigmoid, so predictions lie in [0, 1] like accuracies.
"""

from __future__ import annotations

import torch
from torch import nn

from tans._errors import TansError

__all__ = ["PerformancePredictor"]


class PerformancePredictor(nn.Module):
    """MLP on ``[q, m, q * m]`` -> predicted accuracy in [0, 1].

    Parameters
    ----------
    embed_dim : int
        Width of the query and model embeddings.
    hidden_dim : int
        Width of the hidden layers.
    num_layers : int
        Hidden layers (at least 1).
    dropout : float
        Dropout after each hidden layer.
    """

    def __init__(self, embed_dim: int = 128, *, hidden_dim: int = 256, num_layers: int = 2, dropout: float = 0.0) -> None:
        super().__init__()
        if num_layers < 1:
            raise TansError(f"num_layers must be at least 1, got {num_layers}.")
        self.embed_dim = embed_dim
        layers: list[nn.Module] = []
        width = 3 * embed_dim
        for _ in range(num_layers):
            layers += [nn.Linear(width, hidden_dim), nn.GELU(), nn.Dropout(dropout)]
            width = hidden_dim
        layers.append(nn.Linear(width, 1))
        self.mlp = nn.Sequential(*layers)

    def forward_logits(self, q: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
        """Pre-sigmoid scores; same shapes as :meth:`forward`."""
        if q.shape[-1] != self.embed_dim or m.shape[-1] != self.embed_dim:
            raise TansError(
                f"Predictor expects embeddings of width {self.embed_dim}, got {tuple(q.shape)} and {tuple(m.shape)}."
            )
        try:
            q, m = torch.broadcast_tensors(q, m)
        except RuntimeError:
            raise TansError(
                f"Query {tuple(q.shape)} and model {tuple(m.shape)} embeddings do not broadcast; "
                "for all pairs use q[:, None, :] and m[None, :, :]."
            ) from None
        return self.mlp(torch.cat([q, m, q * m], dim=-1)).squeeze(-1)

    def forward(self, q: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
        """Predicted accuracy of model ``m`` on dataset ``q``.

        Parameters
        ----------
        q : torch.Tensor
            ``(..., embed_dim)`` query embeddings.
        m : torch.Tensor
            ``(..., embed_dim)`` model embeddings, broadcastable with ``q``: e.g. ``(B, e)`` with
            ``(B, e)`` for pairs, or ``q[:, None]`` (D, 1, e) with ``m[None]`` (1, M, e) for the
            (D, M) matrix of all pairs.

        Returns
        -------
        torch.Tensor
            ``(...)`` accuracies in [0, 1].
        """
        return torch.sigmoid(self.forward_logits(q, m))

    def score_matrix(self, q: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
        """``(D, M)`` predicted accuracy of every model in ``m`` (M, e) on every dataset in ``q`` (D, e)."""
        return self.forward(q[:, None, :], m[None, :, :])
