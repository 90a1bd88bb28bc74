"""deeplabplus-mm: TF-faithful DeepLab v3+ for mmsegmentation 1.x.

Importing the package registers everything in mmseg's registries, so a config
needs only ``custom_imports = dict(imports=['deeplabplus_mm'])``.
"""
from . import datasets, evaluation, models  # noqa: F401
from .apis.model_zoo import register_model_names
from .engine import cache_config_formatting, register_safe_checkpoints
from .version import __version__

register_safe_checkpoints()
cache_config_formatting()
register_model_names()  # MMSegInferencer(model=NAME) knows our names

__all__ = ['__version__']
