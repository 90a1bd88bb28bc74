from .deeplabv3plus_tf_head import DeepLabV3PlusTFHead

__all__ = ['DeepLabV3PlusTFHead']
