# The zoo's mobilenetv2_coco_voc_trainaug / _trainval (evaluated at OS 16,
# single scale, as here, or at OS 8: the -d8_ config).
_base_ = [
    '../_base_/models/deeplabv3_mobilenetv2.py',
    '../_base_/datasets/pascal_voc12_aug.py', '../_base_/default_runtime.py',
    '../_base_/schedules/schedule_30k.py'
]
crop_size = (513, 513)
# Training crops are padded to crop_size; evaluation pads bottom/right to
# (513, 513) as TF DeepLab's eval does (127.5 -> 0 after normalisation), which the
# image pooling averages in: converted model-zoo checkpoints reproduce the
# zoo's figures only with it.
data_preprocessor = dict(size=crop_size, test_cfg=dict(size=(513, 513)))
model = dict(
    data_preprocessor=data_preprocessor, decode_head=dict(num_classes=21))
