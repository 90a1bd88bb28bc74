from .inference import (CheckpointMismatchError, Segmenter, build_model,
                        load_weights)
from .model_zoo import register_model_names
from .onnx_runtime import OnnxSegmenter
from .video import list_media, segment_video

__all__ = [
    'Segmenter', 'OnnxSegmenter', 'CheckpointMismatchError', 'build_model',
    'load_weights', 'list_media', 'register_model_names', 'segment_video'
]
