from .aligned_xception import AlignedXception
from .mobilenet_v2_tf import MobileNetV2TF
from .mobilenet_v3_tf import MobileNetV3TF

__all__ = ['AlignedXception', 'MobileNetV2TF', 'MobileNetV3TF']
