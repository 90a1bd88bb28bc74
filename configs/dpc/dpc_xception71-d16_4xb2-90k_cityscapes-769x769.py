# The zoo's xception71_dpc_cityscapes_trainfine (evaluated at OS 16, single
# scale) / _trainval (OS 8, scales 0.75:0.25:2 + flip: the -d8_ config):
# DeepLab v3+ with aligned Xception-71, the Dense Prediction Cell and the
# decoder. The zoo model was pretrained on ImageNet and COCO; the DPC paper
# does not state its Cityscapes schedule: 90k iterations at batch 8 is ours.
_base_ = [
    '../_base_/models/dpc_xception71.py',
    '../_base_/datasets/cityscapes_769x769.py', '../_base_/default_runtime.py',
    '../_base_/schedules/schedule_90k.py'
]
crop_size = (769, 769)
# Training crops are padded to crop_size; evaluation pads bottom/right to
# (1025, 2049) as TF DeepLab's eval does (127.5 -> 0 after normalisation).
data_preprocessor = dict(size=crop_size, test_cfg=dict(size=(1025, 2049)))
model = dict(
    data_preprocessor=data_preprocessor, decode_head=dict(num_classes=19))
train_dataloader = dict(batch_size=2)
# base LR 0.007 at batch 16, scaled to this config's batch 8.
optim_wrapper = dict(optimizer=dict(lr=0.0035))
