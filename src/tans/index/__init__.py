"""Vector index over model embeddings.

The constraint filter of zoo entries lives in :mod:`tans.zoo.constraints`; its names are
re-exported here, where the searcher filters the index's candidates with them.
"""

from tans.index.vector_index import AUTO_EXACT_MAX, VectorIndex, make_index, parse_spec, read_index
from tans.zoo.constraints import Constraints, allowed_mask, require_allowed

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
