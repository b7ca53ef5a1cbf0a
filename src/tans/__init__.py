"""tans: task-adaptive neural network search.

Given a labelled image dataset and deployment constraints, retrieve the pretrained network from a
model zoo that will do best on it after a short fine-tuning, then fine-tune it::

    import tans
    found = tans.search("path/to/images", max_params=100_000, top_k=5)
    tuned = tans.finetune("path/to/images", model=found.best.id, epochs=3)

Names load on first use (module ``__getattr__``), so ``import tans`` does not import torch.
``tans.finetune`` is also the sub-package of the fine-tuning code; calling it runs
:func:`tans._api.finetune`.
"""

from importlib import import_module

from tans.errors import ConfigError, DatasetError, SearchError, TansError, TansWarning, ZooError

__version__ = "0.1.0"

# public name -> module that defines it
_LAZY = {
    "search": "tans._api",
    "load_model": "tans._api",
    "Zoo": "tans.zoo",
    "Searcher": "tans.searcher",
    "Constraints": "tans.zoo.constraints",
    "Dataset": "tans.data",
    "WorkingFormat": "tans.data",
    "load_dataset": "tans.data",
    "to_working": "tans.data",
    "Progress": "tans.progress",
    "ProgressEvent": "tans.progress",
}

__all__ = ["ConfigError", "Constraints", "Dataset", "DatasetError", "Progress", "ProgressEvent", "SearchError", "Searcher",
           "TansError", "TansWarning", "WorkingFormat", "Zoo", "ZooError", "__version__", "finetune", "load_dataset",
           "load_model", "search", "to_working"]


def __getattr__(name: str):
    if name == "finetune":  # the sub-package, callable (see tans/finetune/__init__.py)
        return import_module("tans.finetune")
    if name in _LAZY:
        value = getattr(import_module(_LAZY[name]), name)
        globals()[name] = value  # later look-ups skip this function
        return value
    raise AttributeError(f"module 'tans' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
