from .deeplabv3plus_tf_head import DeepLabV3PlusTFHead
from .dpc_head import DensePredictionCellHead

__all__ = ['DeepLabV3PlusTFHead', 'DensePredictionCellHead']
