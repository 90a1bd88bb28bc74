# Runtime shared by every config of this project (mmseg 1.x conventions).
# ``custom_imports`` registers our modules, so plain mmseg tools work too.
default_scope = 'mmseg'
custom_imports = dict(imports=['deeplabplus_mm'], allow_failed_imports=False)
env_cfg = dict(
    cudnn_benchmark=True,
    mp_cfg=dict(mp_start_method='fork', opencv_num_threads=0),
    # tools/train.py switches to gloo when torch has no CUDA.
    dist_cfg=dict(backend='nccl'),
)
vis_backends = [dict(type='LocalVisBackend')]
visualizer = dict(
    type='SegLocalVisualizer', vis_backends=vis_backends, name='visualizer')
log_processor = dict(by_epoch=False)
log_level = 'INFO'
# load_from restores a checkpoint's model weights and BN statistics only
# (not its optimizer state, iteration or schedule position); with
# load_momentum = True, LoadMomentumHook also puts the TF momentum of a
# checkpoint converted with tools/convert_tf_checkpoint.py --momentum into
# the optimizer, as TF DeepLab's fine-tuning restores it.
load_from = None
load_momentum = False
resume = False
# tta_model: in the dataset configs (configs/_base_/datasets/), next to
# tta_pipeline, with each data set's model-zoo evaluation protocol.
# The fast path (docs/benchmarks.md): validation, testing and TTA run on a
# copy of the model with BN folded into the convs and channels_last weights
# (same predictions, faster); training and checkpoints keep
# the unfused model. The switch: `fast_inference = False` in a config,
# `--cfg-options fast_inference=False` on any tool, `tools/test.py --no-fast`.
fast_inference = True
# A NaN or Inf loss stops training at that iteration, before its checkpoint
# is saved (FiniteLossHook below); `stop_on_nonfinite_loss = False` in a
# config or `--cfg-options stop_on_nonfinite_loss=False` trains on.
stop_on_nonfinite_loss = True
custom_hooks = [
    # deeplabplus_mm.setup_runtime() before the run: checkpoints that load
    # with torch.load(weights_only=True), saved and read as plain data.
    dict(type='RuntimeSetupHook'),
    # RNG states travel in checkpoints: --resume continues bit-identically.
    dict(type='RandomStateHook'),
    dict(type='FastInferenceHook', fuse_conv_bn=True, channels_last=True),
    # Training in channels_last where the config sets train_channels_last.
    dict(type='ChannelsLastTrainingHook'),
    # TF's momentum from load_from when the config sets load_momentum.
    dict(type='LoadMomentumHook'),
    dict(type='FiniteLossHook'),
]
