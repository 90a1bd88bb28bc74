from .aligned_xception import AlignedXception
from .mobilenet_v2_tf import MobileNetV2TF
from .mobilenet_v3_tf import MobileNetV3TF
from .resnet_v1_beta_tf import ResNetV1BetaTF

__all__ = [
    'AlignedXception', 'MobileNetV2TF', 'MobileNetV3TF', 'ResNetV1BetaTF'
]
