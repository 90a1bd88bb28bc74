# DeepLab's training recipe (TF research/deeplab train.py defaults + v3+
# paper): SGD momentum 0.9, poly LR power 0.9 down to 0, base LR 0.007 at
# batch 16 (leaf configs scale it linearly with their batch), weight decay
# 4e-5. TFOptimWrapperConstructor states TF's per-variable rules: weight
# decay on conv weights only (not BN gamma/beta, biases or depthwise
# weights), biases at twice the learning rate, the decode head (TF's "last
# layers") at last_layer_gradient_multiplier times it (TF's flag, 1.0 by
# default; its biases twice that).
optimizer = dict(type='SGD', lr=0.007, momentum=0.9, weight_decay=4e-5)
optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=optimizer,
    clip_grad=None,
    constructor='TFOptimWrapperConstructor',
    paramwise_cfg=dict(last_layer_gradient_multiplier=1.0))
# TF's poly: lr = base * (1 - k / end) ** 0.9 at iteration k, so `end` (=
# max_iters) is TF's training_number_of_steps (see TFPolyLR).
param_scheduler = [
    dict(
        type='TFPolyLR',
        eta_min=0.0,
        power=0.9,
        begin=0,
        end=30000,
        by_epoch=False)
]
train_cfg = dict(type='IterBasedTrainLoop', max_iters=30000, val_interval=3000)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')
default_hooks = dict(
    timer=dict(type='IterTimerHook'),
    logger=dict(type='LoggerHook', interval=50, log_metric_by_epoch=False),
    param_scheduler=dict(type='ParamSchedulerHook'),
    checkpoint=dict(type='CheckpointHook', by_epoch=False, interval=3000),
    sampler_seed=dict(type='DistSamplerSeedHook'),
    visualization=dict(type='SegVisualizationHook'))
