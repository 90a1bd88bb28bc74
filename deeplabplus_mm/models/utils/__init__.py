from .fuse import (fold_sites, fusable_conv_modules, fuse_conv_bn,
                   prepare_for_inference, prepared_copy)
from .frozen_stages import FrozenStagesMixin, default_init_cfg
from .grad_checkpoint import KeepNormStats, checkpoint_forward
from .out_indices import feature_indices

__all__ = [
    'FrozenStagesMixin', 'KeepNormStats', 'checkpoint_forward', 'default_init_cfg',
    'feature_indices', 'fold_sites', 'fuse_conv_bn', 'fusable_conv_modules',
    'prepare_for_inference', 'prepared_copy'
]
