"""Meta-contrastive and predictor losses for training the searcher.

Notation: ``D`` datasets (queries) and ``M`` models in a batch, unit embeddings ``q`` (D, e) and
``m`` (M, e), a boolean ``positives`` matrix (D, M) marking each dataset's best-performing models
(see :func:`positives_from_accuracy`; the published TANS code used a *random* model of the dataset
instead), and an accuracy matrix (D, M) with an ``observed`` mask for the pairs whose accuracy is
known.

- :func:`multi_positive_info_nce`: symmetric InfoNCE with a temperature, in the multi-positive
  (SupCon "L_out") form: each anchor's loss is the mean over its positives of
  ``-log softmax`` over all candidates, in both directions (dataset -> models, model -> datasets).
- :func:`margin_loss`: the paper's hinge form ``max(0, margin - s(q, m+) + s(q, m-))`` over every
  (anchor, positive, negative) triple, averaged (the published code summed, which drowned the
  predictor loss); kept for ablation.
- :func:`predictor_loss`: MSE on accuracy plus a ranking term (pairwise logistic or ListNet) over the
  models observed on the same dataset.
- :class:`MetaContrastiveLoss`: the weighted sum, returning each term for logging.

Weights (defaults of :class:`MetaContrastiveLoss`): at initialisation InfoNCE is about
``log(M)`` (2-5 for 10-100 models per batch); the MSE of accuracies in [0, 1] is about 0.02-0.1,
so it is scaled by ``mse_weight=10``; the pairwise logistic term starts at ``log 2 = 0.69``. With
``predictor_weight=1`` the predictor term (~1-1.5) is of the same order as the contrastive term, so
neither is negligible.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from tans._errors import TansError

__all__ = [
    "LossTerms",
    "MetaContrastiveLoss",
    "margin_loss",
    "multi_positive_info_nce",
    "positives_from_accuracy",
    "predictor_loss",
]


def positives_from_accuracy(accuracy: torch.Tensor, observed: torch.Tensor | None = None, *, top_k: int = 1) -> torch.Tensor:
    """Each dataset's ``top_k`` best observed models, as a boolean positive matrix.

    Parameters
    ----------
    accuracy : torch.Tensor
        ``(D, M)`` accuracy of each model on each dataset.
    observed : torch.Tensor, optional
        ``(D, M)`` bool, True where the accuracy is known; None = all known.
    top_k : int
        Positives per dataset (fewer when fewer models are observed on it).

    Returns
    -------
    torch.Tensor
        ``(D, M)`` bool.
    """
    if top_k < 1:
        raise TansError(f"top_k must be at least 1, got {top_k}.")
    acc = accuracy.detach().to(torch.float32)
    if observed is None:
        observed = torch.ones_like(acc, dtype=torch.bool)
    observed = observed.to(torch.bool)
    ranked = acc.masked_fill(~observed, float("-inf"))
    k = min(top_k, acc.shape[1])
    top = ranked.topk(k, dim=1).indices  # (D, k)
    positives = torch.zeros_like(observed)
    positives.scatter_(1, top, True)
    return positives & observed


def _check_pair(q: torch.Tensor, m: torch.Tensor, positives: torch.Tensor) -> torch.Tensor:
    if q.dim() != 2 or m.dim() != 2 or q.shape[1] != m.shape[1]:
        raise TansError(
            f"Expected query (D, e) and model (M, e) embeddings of the same width, got {tuple(q.shape)} and {tuple(m.shape)}."
        )
    if positives.shape != (q.shape[0], m.shape[0]):
        raise TansError(f"positives must have shape (D, M) = {(q.shape[0], m.shape[0])}, got {tuple(positives.shape)}.")
    positives = positives.to(device=q.device, dtype=torch.bool)
    if not positives.any():
        raise TansError("positives has no True entry; each dataset needs at least one positive model.")
    return positives


def _multi_positive_nll(logits: torch.Tensor, positives: torch.Tensor) -> torch.Tensor:
    """Mean over anchors (rows with a positive) of the mean ``-log softmax`` over their positives."""
    log_prob = logits.log_softmax(dim=1)
    has_pos = positives.any(dim=1)
    pos = positives.to(logits.dtype)
    per_anchor = -(log_prob * pos).sum(dim=1) / pos.sum(dim=1).clamp_min(1.0)
    return per_anchor[has_pos].mean()


def multi_positive_info_nce(
    q: torch.Tensor, m: torch.Tensor, positives: torch.Tensor, *, temperature: float = 0.1
) -> torch.Tensor:
    """Symmetric multi-positive InfoNCE between datasets and models.

    Parameters
    ----------
    q : torch.Tensor
        ``(D, e)`` dataset embeddings (unit norm).
    m : torch.Tensor
        ``(M, e)`` model embeddings (unit norm).
    positives : torch.Tensor
        ``(D, M)`` bool, True where the model is one of the dataset's best.
    temperature : float
        Softmax temperature on cosine similarities.

    Returns
    -------
    torch.Tensor
        Scalar: mean of the dataset->model and model->dataset terms. Anchors without a positive
        (models that are nobody's best) are skipped in their direction but still serve as negatives.
    """
    positives = _check_pair(q, m, positives)
    if temperature <= 0:
        raise TansError(f"temperature must be positive, got {temperature}.")
    logits = q @ m.T / temperature  # (D, M)
    return 0.5 * (_multi_positive_nll(logits, positives) + _multi_positive_nll(logits.T, positives.T))


def _hinge_direction(sim: torch.Tensor, positives: torch.Tensor, margin: float) -> torch.Tensor:
    """Mean hinge over (anchor row, positive column, negative column) triples."""
    # (rows, P, N) via broadcasting: margin - s(a, p) + s(a, n)
    hinge = (margin - sim.unsqueeze(2) + sim.unsqueeze(1)).clamp_min(0.0)
    valid = positives.unsqueeze(2) & ~positives.unsqueeze(1)
    count = valid.sum()
    if count == 0:
        return sim.new_zeros(())
    return (hinge * valid.to(sim.dtype)).sum() / count


def margin_loss(q: torch.Tensor, m: torch.Tensor, positives: torch.Tensor, *, margin: float = 0.2) -> torch.Tensor:
    """The paper's margin (hinge) loss on cosine similarity, averaged over triples, both directions.

    Parameters
    ----------
    q, m, positives
        As in :func:`multi_positive_info_nce`.
    margin : float
        Required gap between a positive's and a negative's similarity.

    Returns
    -------
    torch.Tensor
        Scalar: mean of the dataset-anchored and model-anchored hinge means.
    """
    positives = _check_pair(q, m, positives)
    sim = q @ m.T  # (D, M)
    return 0.5 * (_hinge_direction(sim, positives, margin) + _hinge_direction(sim.T, positives.T, margin))


def predictor_loss(
    predicted: torch.Tensor,
    accuracy: torch.Tensor,
    observed: torch.Tensor | None = None,
    *,
    ranking: str = "pairwise",
    mse_weight: float = 10.0,
    rank_weight: float = 1.0,
    rank_scale: float = 10.0,
    rank_observed: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Regression plus ranking loss for predicted accuracies.

    Parameters
    ----------
    predicted : torch.Tensor
        ``(D, M)`` predicted accuracy in [0, 1].
    accuracy : torch.Tensor
        ``(D, M)`` true accuracy in [0, 1].
    observed : torch.Tensor, optional
        ``(D, M)`` bool, True where the accuracy is known; None = all known.
    ranking : str
        ``"pairwise"``: mean logistic loss ``log(1 + exp(-s (p_i - p_j)))`` over pairs of observed
        models on the same dataset with ``acc_i > acc_j``; ``"listnet"``: cross-entropy between
        ``softmax(s * acc)`` and ``softmax(s * p)`` over each dataset's observed models; ``"none"``.
    mse_weight, rank_weight : float
        Weights of the two terms.
    rank_scale : float
        ``s`` above: an accuracy gap of ``1 / s`` counts as one logit.
    rank_observed : torch.Tensor, optional
        ``(D, M)`` bool: the models each dataset's ranking term compares (within ``observed``);
        None = every observed model. The regression term always reads every observed model.

    Returns
    -------
    total : torch.Tensor
        ``mse_weight * mse + rank_weight * rank``.
    mse, rank : torch.Tensor
        The unweighted terms (scalars).
    """
    if predicted.shape != accuracy.shape or predicted.dim() != 2:
        raise TansError(
            f"predicted and accuracy must both have shape (D, M), got {tuple(predicted.shape)} and {tuple(accuracy.shape)}."
        )
    accuracy = accuracy.to(predicted.dtype)
    if observed is None:
        observed = torch.ones_like(predicted, dtype=torch.bool)
    observed = observed.to(device=predicted.device, dtype=torch.bool)
    if not observed.any():
        raise TansError("observed has no True entry; the predictor needs at least one known accuracy.")
    mse = ((predicted - accuracy) ** 2)[observed].mean()
    if rank_observed is not None:
        observed = observed & rank_observed.to(device=predicted.device, dtype=torch.bool)

    if ranking == "pairwise":
        # pair[d, i, j]: both observed on dataset d and model i is truly better than model j.
        better = accuracy.unsqueeze(2) > accuracy.unsqueeze(1)
        pair = better & observed.unsqueeze(2) & observed.unsqueeze(1)
        diff = predicted.unsqueeze(2) - predicted.unsqueeze(1)
        rank = F.softplus(-rank_scale * diff)[pair].mean() if pair.any() else predicted.new_zeros(())
    elif ranking == "listnet":
        rows = observed.sum(dim=1) >= 2
        if rows.any():
            neg_inf = torch.finfo(predicted.dtype).min
            target = (rank_scale * accuracy).masked_fill(~observed, neg_inf).softmax(dim=1)
            log_p = (rank_scale * predicted).masked_fill(~observed, neg_inf).log_softmax(dim=1)
            rank = -(target * log_p).masked_fill(~observed, 0.0).sum(dim=1)[rows].mean()
        else:
            rank = predicted.new_zeros(())
    elif ranking == "none":
        rank = predicted.new_zeros(())
    else:
        raise TansError(f"Unknown ranking loss '{ranking}'. Expected 'pairwise', 'listnet' or 'none'.")
    return mse_weight * mse + rank_weight * rank, mse, rank


@dataclass
class LossTerms:
    """The total loss and its parts (detached floats, for logging).

    Attributes
    ----------
    total : torch.Tensor
        Scalar to backpropagate.
    contrastive, mse, rank : float
        Unweighted terms (``mse`` and ``rank`` are 0 without predictor inputs).
    """

    total: torch.Tensor
    contrastive: float
    mse: float
    rank: float


class MetaContrastiveLoss(nn.Module):
    """Contrastive term + ``predictor_weight`` x predictor term.

    Parameters
    ----------
    contrastive : str
        ``"infonce"`` (:func:`multi_positive_info_nce`) or ``"margin"`` (:func:`margin_loss`).
    temperature : float
        InfoNCE temperature.
    margin : float
        Hinge margin for ``contrastive="margin"``.
    predictor_weight : float
        Weight of the whole predictor term (0 disables it).
    ranking : str
        ``"pairwise"``, ``"listnet"`` or ``"none"`` (see :func:`predictor_loss`).
    mse_weight, rank_weight, rank_scale : float
        See :func:`predictor_loss`; the defaults put the predictor term at the contrastive term's
        order of magnitude (module docstring).
    """

    def __init__(
        self,
        *,
        contrastive: str = "infonce",
        temperature: float = 0.1,
        margin: float = 0.2,
        predictor_weight: float = 1.0,
        ranking: str = "pairwise",
        mse_weight: float = 10.0,
        rank_weight: float = 1.0,
        rank_scale: float = 10.0,
    ) -> None:
        super().__init__()
        if contrastive not in ("infonce", "margin"):
            raise TansError(f"Unknown contrastive loss '{contrastive}'. Expected 'infonce' or 'margin'.")
        if ranking not in ("pairwise", "listnet", "none"):
            raise TansError(f"Unknown ranking loss '{ranking}'. Expected 'pairwise', 'listnet' or 'none'.")
        self.contrastive = contrastive
        self.temperature = temperature
        self.margin = margin
        self.predictor_weight = predictor_weight
        self.ranking = ranking
        self.mse_weight = mse_weight
        self.rank_weight = rank_weight
        self.rank_scale = rank_scale

    def forward(
        self,
        q: torch.Tensor,
        m: torch.Tensor,
        positives: torch.Tensor,
        predicted: torch.Tensor | None = None,
        accuracy: torch.Tensor | None = None,
        observed: torch.Tensor | None = None,
    ) -> LossTerms:
        """Compute the loss.

        Parameters
        ----------
        q : torch.Tensor
            ``(D, e)`` dataset embeddings.
        m : torch.Tensor
            ``(M, e)`` model embeddings.
        positives : torch.Tensor
            ``(D, M)`` bool positive matrix.
        predicted, accuracy, observed : torch.Tensor, optional
            ``(D, M)`` predicted accuracy, true accuracy and known-pair mask for the predictor term;
            without ``predicted`` only the contrastive term is used.

        Returns
        -------
        LossTerms
        """
        if self.contrastive == "infonce":
            contrast = multi_positive_info_nce(q, m, positives, temperature=self.temperature)
        else:
            contrast = margin_loss(q, m, positives, margin=self.margin)
        total = contrast
        mse = rank = contrast.new_zeros(())
        if predicted is not None and self.predictor_weight > 0:
            if accuracy is None:
                raise TansError("predicted was given without accuracy; pass the true accuracies too.")
            pred_total, mse, rank = predictor_loss(
                predicted,
                accuracy,
                observed,
                ranking=self.ranking,
                mse_weight=self.mse_weight,
                rank_weight=self.rank_weight,
                rank_scale=self.rank_scale,
            )
            total = total + self.predictor_weight * pred_total
        return LossTerms(total=total, contrastive=float(contrast.detach()), mse=float(mse.detach()), rank=float(rank.detach()))
