"""What a process that trains or tests our models changes in mmengine and
torch, done on request, never on ``import deeplabplus_mm``.

:func:`setup_runtime` makes mmengine checkpoints plain data that load with
``torch.load(weights_only=True)`` (:func:`~.checkpoint.register_safe_checkpoints`)
and memoises the formatting of a config's text
(:func:`~.config_text.cache_config_formatting`). Our tools call it first
thing; a runner built from our configs calls it through
:class:`RuntimeSetupHook` (``configs/_base_/default_runtime.py``), so code
that drives mmengine's ``Runner`` itself needs nothing more.
"""
from mmengine.hooks import Hook
from mmengine.registry import HOOKS

from .checkpoint import register_safe_checkpoints
from .config_text import cache_config_formatting


def setup_runtime() -> None:
    """Safe checkpoints and the config-text memo; idempotent."""
    register_safe_checkpoints()
    cache_config_formatting()


@HOOKS.register_module()
class RuntimeSetupHook(Hook):
    """Call :func:`setup_runtime` before the run, before any checkpoint is
    loaded (``load_from``, ``--resume``) or saved."""

    priority = 'HIGHEST'

    def before_run(self, runner) -> None:
        setup_runtime()
