from .deeplabv3plus_tf_head import DeepLabV3PlusTFHead
from .dpc_head import DensePredictionCellHead
from .lraspp_tf_head import LRASPPTFHead

__all__ = ['DeepLabV3PlusTFHead', 'DensePredictionCellHead', 'LRASPPTFHead']
