from .aligned_xception import AlignedXception
from .mobilenet_v2_tf import MobileNetV2TF

__all__ = ['AlignedXception', 'MobileNetV2TF']
