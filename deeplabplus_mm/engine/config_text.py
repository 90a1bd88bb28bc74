"""Format a config's text once per process, not once per reader.

mmengine turns a config into text with yapf whenever it is asked for
``Config.pretty_text``, and a runner asks several times while it starts
(the log, the copy dumped to the work dir, the visualizer's and the message
hub's), for the same text each time (docs/benchmarks.md has the cost).
yapf's ``FormatCode`` is a pure function of its arguments, so
:func:`cache_config_formatting` puts a memo in front of the one mmengine's
``Config`` calls: the texts are identical to unmemoised ones, computed once
per distinct config text.
"""
import functools
import json

from mmengine.config import config as _config_module

_CACHE_SIZE = 16  # distinct config texts kept per process


def _memoised(format_code):
    cache = {}

    @functools.wraps(format_code)
    def format_once(source, *args, **kwargs):
        key = (source, json.dumps([args, kwargs], sort_keys=True,
                                  default=repr))
        if key not in cache:
            if len(cache) >= _CACHE_SIZE:
                cache.pop(next(iter(cache)))  # the oldest
            cache[key] = format_code(source, *args, **kwargs)
        return cache[key]

    format_once.uncached = format_code
    return format_once


def cache_config_formatting() -> None:
    """Memoise the yapf formatting behind ``Config.pretty_text``.

    Part of :func:`~.runtime_setup.setup_runtime`; idempotent.
    """
    current = _config_module.FormatCode
    if not hasattr(current, 'uncached'):
        _config_module.FormatCode = _memoised(current)
