# The zoo's mobilenetv3_large_cityscapes_trainfine (evaluated at OS 32,
# single scale). The zoo model was trained on Cityscapes alone (no ImageNet
# initialisation); model_zoo.md does not state its schedule: 90k iterations
# at batch 8 is ours.
_base_ = [
    '../_base_/models/lraspp_mobilenetv3.py',
    '../_base_/datasets/cityscapes_769x769.py', '../_base_/default_runtime.py',
    '../_base_/schedules/schedule_90k.py'
]
crop_size = (769, 769)
# Training crops are padded to crop_size (features 25x25 = the pooling
# window: a global pooling); evaluation pads bottom/right to (1025, 2049) as
# TF DeepLab's eval does (127.5 -> 0 after normalisation): the 25x25 window
# then moves by (4, 5) over 33x65 features (a 3x9 gate), so converted
# model-zoo checkpoints reproduce the zoo's figures only with it.
data_preprocessor = dict(size=crop_size, test_cfg=dict(size=(1025, 2049)))
model = dict(data_preprocessor=data_preprocessor)
train_dataloader = dict(batch_size=2)
# base LR 0.007 at batch 16, scaled to this config's batch 8.
optim_wrapper = dict(optimizer=dict(lr=0.0035))
