"""Training recipe and loop shared by zoo building and fine-tuning."""

from tans.training.loop import EpochStats, TrainResult, default_device, evaluate, to_input, train
from tans.training.recipe import Recipe

__all__ = ["Recipe", "train", "evaluate", "TrainResult", "EpochStats", "to_input", "default_device"]
