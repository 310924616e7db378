"""AU priors of DPK-GAT: the psychological coordination graph and the statistical co-occurrence prior."""

from mer.priors.psych import (
    COORDINATED,
    COORDINATED_ONE_WAY,
    LOWER_EDGES,
    SOURCE,
    UPPER_EDGES,
    global_adjacency,
    lower_adjacency,
    uniform_prior,
    upper_adjacency,
)
from mer.priors.stat import (
    VECTOR_LENGTH,
    cooccurrence_counts,
    counts_to_vector,
    restrict_prior,
    statistical_prior,
    vector_to_counts,
)

__all__ = [
    "COORDINATED",
    "COORDINATED_ONE_WAY",
    "LOWER_EDGES",
    "SOURCE",
    "UPPER_EDGES",
    "VECTOR_LENGTH",
    "cooccurrence_counts",
    "counts_to_vector",
    "global_adjacency",
    "lower_adjacency",
    "restrict_prior",
    "statistical_prior",
    "uniform_prior",
    "upper_adjacency",
    "vector_to_counts",
]
