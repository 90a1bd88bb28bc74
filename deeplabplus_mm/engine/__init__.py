from .checkpoint import register_safe_checkpoints


def setup_launcher(cfg):
    return cfg


__all__ = ['register_safe_checkpoints', 'setup_launcher']
