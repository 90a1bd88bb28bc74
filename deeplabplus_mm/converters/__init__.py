"""TF checkpoint reading and conversion to our ``state_dict``.

This subpackage itself imports neither torch, mmseg nor mmcv (converting a
checkpoint needs none of them); ``tools/convert_tf_checkpoint.py`` imports
it without ``deeplabplus_mm/__init__.py``, which registers the models.
"""
from .configs import (expected_from_config, expected_state_shapes,
                      load_model_config, suggest_config, usage_lines)
from .crc import crc32c
from .detect import CheckpointInfo, ConversionError, inspect_variables
from .naming import (map_name, map_scope, tf_variable_names, tf_variables,
                     to_torch_layout)
from .planning import Entry, plan
from .tf_bundle import (CheckpointReader, TFCheckpointError, load_checkpoint,
                        open_checkpoint, read_index)
from .tf_deeplab import convert, convert_checkpoint
from .torch_format import TorchFileWriter

__all__ = [
    'CheckpointInfo', 'CheckpointReader', 'ConversionError', 'Entry',
    'TFCheckpointError', 'TorchFileWriter', 'convert', 'convert_checkpoint',
    'crc32c', 'expected_from_config', 'expected_state_shapes',
    'inspect_variables', 'load_checkpoint', 'load_model_config', 'map_name',
    'map_scope', 'open_checkpoint', 'plan', 'read_index', 'suggest_config',
    'tf_variable_names', 'tf_variables', 'to_torch_layout', 'usage_lines'
]
