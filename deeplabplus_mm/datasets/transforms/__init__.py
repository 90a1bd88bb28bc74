from .load_voc_annotations import LoadVOCAnnotations
from .tf_random_scale import TFRandomScale

__all__ = ['LoadVOCAnnotations', 'TFRandomScale']
