from .fuse import fuse_conv_bn, fusable_conv_modules

__all__ = ['fuse_conv_bn', 'fusable_conv_modules']
