# The zoo's EdgeTPU-DeepLab at output stride 16 (74.1 % val, single scale);
# trained with the flags of the zoo's MobileNetV2 Cityscapes model
# (model_zoo.md), as deeplabv3_mobilenetv2-d16_4xb2-90k_cityscapes-769x769.py.
_base_ = [
    '../_base_/models/deeplabv3_mobilenetv3-edgetpu.py',
    '../_base_/datasets/cityscapes_769x769.py', '../_base_/default_runtime.py',
    '../_base_/schedules/schedule_90k.py'
]
crop_size = (769, 769)
# Evaluation pads bottom/right to (1025, 2049) as TF DeepLab's eval does
# (127.5 -> 0 after normalisation), which the image pooling averages in.
data_preprocessor = dict(size=crop_size, test_cfg=dict(size=(1025, 2049)))
model = dict(data_preprocessor=data_preprocessor)
train_dataloader = dict(batch_size=2)
# base LR 0.007 at batch 16, scaled to this config's batch 8.
optim_wrapper = dict(optimizer=dict(lr=0.0035))
