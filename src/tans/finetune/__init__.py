"""Fine-tuning a zoo model on a new dataset, the from-scratch comparison, saving and export."""

from tans.finetune.export import FinetunedMeta, FinetunedModel, export_onnx, load_finetuned, save_finetuned
from tans.finetune.finetune import (
    Comparison,
    FinetuneResult,
    finetune,
    finetune_and_scratch,
    finetune_recipe,
)
from tans.finetune.plots import plot_curves

__all__ = [
    "finetune",
    "finetune_and_scratch",
    "finetune_recipe",
    "FinetuneResult",
    "Comparison",
    "save_finetuned",
    "load_finetuned",
    "FinetunedModel",
    "FinetunedMeta",
    "export_onnx",
    "plot_curves",
]
