from .aligned_xception import AlignedXception
from .mobilenet_v2_tf import MobileNetV2TF
from .resnet_v1_beta_tf import ResNetV1BetaTF

__all__ = ['AlignedXception', 'MobileNetV2TF', 'ResNetV1BetaTF']
