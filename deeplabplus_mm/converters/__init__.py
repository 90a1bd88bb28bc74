from .crc import crc32c
from .tf_bundle import (CheckpointReader, TFCheckpointError, load_checkpoint,
                        open_checkpoint, read_index)
from .tf_bundle_writer import write_checkpoint
from .tf_deeplab import (CheckpointInfo, ConversionError, convert,
                         convert_reader, expected_state_shapes,
                         inspect_variables, map_name, map_scope,
                         reference_model, suggest_configs,
                         to_torch_layout)

__all__ = [
    'CheckpointInfo', 'CheckpointReader', 'ConversionError',
    'TFCheckpointError', 'convert', 'convert_reader', 'crc32c',
    'expected_state_shapes', 'inspect_variables', 'load_checkpoint',
    'map_name', 'map_scope', 'open_checkpoint', 'read_index',
    'reference_model', 'suggest_configs', 'to_torch_layout',
    'write_checkpoint'
]
