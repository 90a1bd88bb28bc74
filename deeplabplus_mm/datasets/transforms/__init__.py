from .load_voc_annotations import LoadVOCAnnotations

__all__ = ['LoadVOCAnnotations']
