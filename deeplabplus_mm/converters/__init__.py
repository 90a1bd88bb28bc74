"""TF checkpoint reading and conversion to our ``state_dict``.

This subpackage itself imports neither torch, mmseg nor mmcv (converting a
checkpoint needs none of them); ``tools/convert_tf_checkpoint.py`` imports
it without ``deeplabplus_mm/__init__.py``, which registers the models.
"""
from .crc import crc32c
from .tf_bundle import (CheckpointReader, TFCheckpointError, load_checkpoint,
                        open_checkpoint, read_index)
from .tf_deeplab import (CheckpointInfo, ConversionError, Entry, convert,
                         convert_checkpoint, expected_from_config,
                         expected_state_shapes, inspect_variables,
                         load_model_config, map_name, map_scope, plan,
                         suggest_config, tf_variable_names, tf_variables,
                         to_torch_layout, usage_lines)
from .torch_format import TorchFileWriter

__all__ = [
    'CheckpointInfo', 'CheckpointReader', 'ConversionError', 'Entry',
    'TFCheckpointError', 'TorchFileWriter', 'convert', 'convert_checkpoint',
    'crc32c', 'expected_from_config', 'expected_state_shapes',
    'inspect_variables', 'load_checkpoint', 'load_model_config', 'map_name',
    'map_scope', 'open_checkpoint', 'plan', 'read_index', 'suggest_config',
    'tf_variable_names', 'tf_variables', 'to_torch_layout', 'usage_lines'
]
