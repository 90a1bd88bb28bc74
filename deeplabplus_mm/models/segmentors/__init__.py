from .seg_tta import AccumulatingSegTTAModel
from .tf_multiscale_tta import (TFMultiScaleSegTTAModel, scale_dimension,
                                tf_resize_to_range)

__all__ = [
    'AccumulatingSegTTAModel', 'TFMultiScaleSegTTAModel', 'scale_dimension',
    'tf_resize_to_range'
]
