from .channels_last_hook import (ChannelsLastTrainingHook,
                                 train_channels_last)
from .checkpoint import register_safe_checkpoints
from .config_text import cache_config_formatting
from .cpu_amp_optim_wrapper import CPUAmpOptimWrapper
from .distributed import (CPUDistributedDataParallel, CPUSyncBatchNorm,
                          finish_launcher, run_main, setup_launcher)
from .fast_inference_hook import FastInferenceHook
from .random_state_hook import RandomStateHook

__all__ = [
    'CPUAmpOptimWrapper', 'ChannelsLastTrainingHook',
    'CPUDistributedDataParallel', 'CPUSyncBatchNorm', 'FastInferenceHook',
    'RandomStateHook', 'cache_config_formatting', 'finish_launcher',
    'register_safe_checkpoints', 'run_main', 'setup_launcher',
    'train_channels_last'
]
