from .aligned_xception import AlignedXception

__all__ = ['AlignedXception']
