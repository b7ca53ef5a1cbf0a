"""Fine-tuning a zoo model on a new dataset, the from-scratch comparison, saving and export.

The package is also callable: ``tans.finetune(dataset, model=ID)`` is :func:`tans._api.finetune`
(the package-root API), so the name ``tans.finetune`` works both ways whichever is imported first.
"""

import sys
import types

from tans.finetune.export import (
    FinetunedMeta,
    FinetunedModel,
    export_onnx,
    load_finetuned,
    save_finetuned,
)
from tans.finetune.finetune import finetune, finetune_and_scratch, finetune_recipe
from tans.finetune.plots import plot_curves
from tans.finetune.result import Comparison, FinetuneResult

__all__ = [
    "Comparison",
    "FinetuneResult",
    "FinetunedMeta",
    "FinetunedModel",
    "export_onnx",
    "finetune",
    "finetune_and_scratch",
    "finetune_recipe",
    "load_finetuned",
    "plot_curves",
    "save_finetuned",
]


class _CallableModule(types.ModuleType):
    def __call__(self, *args, **kwargs):
        from tans._api import finetune as api_finetune

        return api_finetune(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
