"""The search space: architectures, their names, builders, samplers, costs and embeddings."""

from tans.space.arch import Arch, encoding_size, parse_arch
from tans.space.functional import EMBEDDING_SIZE, functional_embedding, probe_images
from tans.space.measure import Cost, count_flops, count_parameters, measure, measure_latency
from tans.space.mobilenet import NUM_FEATURES, MobileNetSpace, count_params
from tans.space.registry import create_model, is_model, list_models, register_model, resolve_arch
from tans.space.sampling import param_range, sample_stratified, sample_uniform

__all__ = [
    "Arch",
    "parse_arch",
    "encoding_size",
    "MobileNetSpace",
    "NUM_FEATURES",
    "count_params",
    "register_model",
    "list_models",
    "create_model",
    "is_model",
    "resolve_arch",
    "sample_uniform",
    "sample_stratified",
    "param_range",
    "Cost",
    "measure",
    "count_parameters",
    "count_flops",
    "measure_latency",
    "functional_embedding",
    "probe_images",
    "EMBEDDING_SIZE",
]
