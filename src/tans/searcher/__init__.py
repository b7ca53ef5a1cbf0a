"""The searcher: set encoder, model encoder, performance predictor, losses, training-free scores."""

from tans.searcher.logme import logme_score
from tans.searcher.losses import (
    LossTerms,
    MetaContrastiveLoss,
    margin_loss,
    multi_positive_info_nce,
    positives_from_accuracy,
    predictor_loss,
)
from tans.searcher.predictor import PerformancePredictor
from tans.searcher.set_encoder import AttentionPooling, MeanPooling, list_set_encoders, make_set_encoder

__all__ = [
    "AttentionPooling",
    "LossTerms",
    "MeanPooling",
    "MetaContrastiveLoss",
    "PerformancePredictor",
    "list_set_encoders",
    "logme_score",
    "make_set_encoder",
    "margin_loss",
    "multi_positive_info_nce",
    "positives_from_accuracy",
    "predictor_loss",
]
