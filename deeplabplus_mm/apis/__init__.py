from .inference import CheckpointMismatchError, Segmenter, load_weights
from .onnx_runtime import OnnxSegmenter
from .video import list_media, segment_video

__all__ = [
    'Segmenter', 'OnnxSegmenter', 'CheckpointMismatchError', 'load_weights',
    'list_media', 'segment_video'
]
