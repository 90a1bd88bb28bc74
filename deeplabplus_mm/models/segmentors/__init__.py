from .seg_tta import AccumulatingSegTTAModel
from .tf_fake_quant_encoder_decoder import TFFakeQuantEncoderDecoder
from .tf_multiscale_tta import (TFMultiScaleSegTTAModel, scale_dimension,
                                tf_resize_to_range)

__all__ = [
    'AccumulatingSegTTAModel', 'TFFakeQuantEncoderDecoder',
    'TFMultiScaleSegTTAModel', 'scale_dimension', 'tf_resize_to_range'
]
