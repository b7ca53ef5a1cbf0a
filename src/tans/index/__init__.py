"""Vector index over model embeddings and constraint filtering of zoo entries."""

from tans.index.constraints import Constraints, allowed_mask, require_allowed
from tans.index.vector_index import AUTO_EXACT_MAX, VectorIndex, make_index, parse_spec, read_index

__all__ = [
    "AUTO_EXACT_MAX",
    "Constraints",
    "VectorIndex",
    "allowed_mask",
    "make_index",
    "parse_spec",
    "read_index",
    "require_allowed",
]
