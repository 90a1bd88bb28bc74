from .fuse import (fold_sites, fusable_conv_modules, fuse_conv_bn,
                   prepare_for_inference)

__all__ = [
    'fold_sites', 'fuse_conv_bn', 'fusable_conv_modules',
    'prepare_for_inference'
]
