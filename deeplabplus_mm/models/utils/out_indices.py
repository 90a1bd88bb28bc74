"""``out_indices`` as mmseg's backbones take them, checked once."""
from typing import List, Sequence


def feature_indices(out_indices: Sequence[int],
                    num_features: int) -> List[int]:
    """``out_indices`` as indices in ``[0, num_features)`` (negative ones
    count from the end).

    Raises:
        ValueError: ``out_indices`` is empty or an index is out of range.
    """
    if not out_indices:
        raise ValueError('out_indices must not be empty')
    for index in out_indices:
        if not -num_features <= index < num_features:
            raise ValueError(f'out_indices {tuple(out_indices)} out of '
                             f'range for {num_features} features')
    return [index % num_features for index in out_indices]
