"""The on/off keys a config sets for our hooks, read one way."""


def config_switch(cfg, key: str, default: bool) -> bool:
    """``cfg[key]``, ``default`` when the key is absent or there is no
    config (a runner built without one).

    Raises:
        ValueError: the value is not True or False (``'False'`` from a
            command line would otherwise read as on).
    """
    value = cfg.get(key, default) if cfg is not None else default
    if not isinstance(value, bool):
        raise ValueError(f'{key} must be True or False, got {value!r}')
    return value
