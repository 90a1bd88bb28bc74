"""deeplabplus-mm: TF-faithful DeepLab v3+ for mmsegmentation 1.x.

Importing the package registers our modules in mmseg's registries and
changes nothing else, so a config needs only
``custom_imports = dict(imports=['deeplabplus_mm'])``. What a training or
test process changes in mmengine and torch (checkpoints that load with
``weights_only``) is :func:`setup_runtime`, which our tools and the
``RuntimeSetupHook`` of our configs call.
"""
from . import datasets, engine, evaluation, models  # noqa: F401
from .engine import setup_runtime
from .version import __version__

__all__ = ['__version__', 'setup_runtime']
