from .inference import Segmenter

__all__ = ['Segmenter']
