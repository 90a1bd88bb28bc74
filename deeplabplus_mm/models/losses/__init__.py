from .tf_cross_entropy_loss import TFCrossEntropyLoss, tf_top_k_pixels

__all__ = ['TFCrossEntropyLoss', 'tf_top_k_pixels']
