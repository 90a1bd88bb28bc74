from .inference import (CheckpointMismatchError, Segmenter, build_model,
                        load_weights)
from .onnx_runtime import OnnxSegmenter
from .video import list_media, segment_video

__all__ = [
    'Segmenter', 'OnnxSegmenter', 'CheckpointMismatchError', 'build_model',
    'load_weights', 'list_media', 'segment_video'
]
