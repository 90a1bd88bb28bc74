from .deeplabv3plus_tf_head import DeepLabV3PlusTFHead
from .dpc_head import DensePredictionCellHead
from .lraspp_tf_head import LRASPPTFHead
from .tf_decode_head import TFDecodeHead

__all__ = ['DeepLabV3PlusTFHead', 'DensePredictionCellHead', 'LRASPPTFHead',
           'TFDecodeHead']
