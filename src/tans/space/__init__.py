"""The search space: architectures, their names, builders, samplers, costs and embeddings.

Names load on first use (module ``__getattr__``): ``tans.space.arch`` (names and their parsing)
needs only NumPy, so listing a zoo does not import torch.
"""

from importlib import import_module

# public name -> module that defines it
_LAZY = {
    **dict.fromkeys(["Arch", "parse_arch", "encoding_size", "short_name"], "tans.space.arch"),
    **dict.fromkeys(["MobileNetSpace", "NUM_FEATURES", "count_params"], "tans.space.mobilenet"),
    **dict.fromkeys(["register_model", "list_models", "create_model", "is_model", "resolve_arch"],
                    "tans.space.registry"),
    **dict.fromkeys(["sample_uniform", "sample_stratified", "param_range"], "tans.space.sampling"),
    **dict.fromkeys(["Cost", "measure", "count_parameters", "count_flops", "measure_latency"], "tans.space.measure"),
    **dict.fromkeys(["functional_embedding", "probe_images", "EMBEDDING_SIZE"], "tans.space.functional"),
}

__all__ = list(_LAZY)


def __getattr__(name: str):
    if name in _LAZY:
        value = getattr(import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'tans.space' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
