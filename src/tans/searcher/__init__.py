"""The searcher: feature extractor, query and model encoders, predictor, losses, meta-training on
transfer records, probes and their combiner, search."""

from tans.searcher.artifact import FORMAT_VERSION, load_artifact, save_artifact
from tans.searcher.combiner import ProbeCombiner
from tans.searcher.encoders import ModelEncoder, QueryEncoder, SearcherNet, model_inputs
from tans.searcher.experience import TransferTable, transfer_table
from tans.searcher.features import DEFAULT_EXTRACTOR, FeatureExtractor, make_extractor, query_sample, train_default_extractor
from tans.searcher.logme import logme_score
from tans.searcher.losses import (
    LossTerms,
    MetaContrastiveLoss,
    margin_loss,
    multi_positive_info_nce,
    positives_from_accuracy,
    predictor_loss,
)
from tans.searcher.meta_train import EpochLog, MetaTrainConfig, MetaTrainResult, evaluate_targets, meta_train, split_by_family
from tans.searcher.predictor import PerformancePredictor
from tans.searcher.searcher import Searcher, SearchResult, SearchRow
from tans.searcher.set_encoder import AttentionPooling, MeanPooling, list_set_encoders, make_set_encoder

__all__ = [
    "AttentionPooling",
    "DEFAULT_EXTRACTOR",
    "EpochLog",
    "FORMAT_VERSION",
    "FeatureExtractor",
    "LossTerms",
    "MeanPooling",
    "MetaContrastiveLoss",
    "MetaTrainConfig",
    "MetaTrainResult",
    "ModelEncoder",
    "PerformancePredictor",
    "ProbeCombiner",
    "QueryEncoder",
    "SearchResult",
    "SearchRow",
    "Searcher",
    "TransferTable",
    "SearcherNet",
    "evaluate_targets",
    "list_set_encoders",
    "load_artifact",
    "logme_score",
    "make_extractor",
    "make_set_encoder",
    "margin_loss",
    "meta_train",
    "model_inputs",
    "multi_positive_info_nce",
    "positives_from_accuracy",
    "predictor_loss",
    "query_sample",
    "save_artifact",
    "split_by_family",
    "transfer_table",
    "train_default_extractor",
]
