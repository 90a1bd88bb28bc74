from .atomic_checkpoint_hook import (AtomicCheckpointHook,
                                     CheckpointSaveError,
                                     use_atomic_checkpoints)
from .channels_last_hook import (ChannelsLastTrainingHook,
                                 train_channels_last)
from .checkpoint import register_safe_checkpoints
from .config_text import cache_config_formatting
from .cpu_amp_optim_wrapper import CPUAmpOptimWrapper
from .distributed import (CPUDistributedDataParallel, CPUSyncBatchNorm,
                          finish_launcher, run_main, setup_launcher)
from .fast_inference_hook import FastInferenceHook, fast_inference_enabled
from .finite_loss_hook import FiniteLossHook, NonFiniteLossError
from .load_momentum_hook import LoadMomentumHook, load_momentum
from .random_state_hook import RandomStateHook
from .restart import restart_count, resume_after_restart
from .runtime_setup import RuntimeSetupHook, setup_runtime
from .tf_optim_constructor import TFOptimWrapperConstructor
from .tf_poly_lr import TFPolyLR

__all__ = [
    'AtomicCheckpointHook', 'CPUAmpOptimWrapper', 'ChannelsLastTrainingHook',
    'CPUDistributedDataParallel', 'CPUSyncBatchNorm', 'CheckpointSaveError',
    'FastInferenceHook', 'FiniteLossHook', 'LoadMomentumHook',
    'NonFiniteLossError', 'RandomStateHook', 'RuntimeSetupHook',
    'TFOptimWrapperConstructor', 'TFPolyLR', 'cache_config_formatting',
    'fast_inference_enabled', 'finish_launcher',
    'load_momentum', 'register_safe_checkpoints', 'restart_count',
    'resume_after_restart', 'run_main', 'setup_launcher', 'setup_runtime',
    'train_channels_last', 'use_atomic_checkpoints'
]
