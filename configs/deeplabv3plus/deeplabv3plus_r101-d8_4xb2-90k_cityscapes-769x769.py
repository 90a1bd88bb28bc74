_base_ = [
    '../_base_/models/deeplabv3plus_r101-d8.py',
    '../_base_/datasets/cityscapes_769x769.py', '../_base_/default_runtime.py',
    '../_base_/schedules/schedule_90k.py'
]
crop_size = (769, 769)
data_preprocessor = dict(size=crop_size, test_cfg=dict(size=(1025, 2049)))
model = dict(
    data_preprocessor=data_preprocessor, decode_head=dict(num_classes=19))
train_dataloader = dict(batch_size=2)
# base LR 0.007 at batch 16, scaled to this config's batch 8.
optim_wrapper = dict(optimizer=dict(lr=0.0035))
