from .seg_tta import AccumulatingSegTTAModel

__all__ = ['AccumulatingSegTTAModel']
