_base_ = [
    '../_base_/models/deeplabv3plus_r101-d8.py',
    '../_base_/datasets/pascal_context_59.py', '../_base_/default_runtime.py',
    '../_base_/schedules/schedule_30k.py'
]
crop_size = (513, 513)
data_preprocessor = dict(size=crop_size, test_cfg=dict(size=(513, 513)))
model = dict(
    data_preprocessor=data_preprocessor, decode_head=dict(num_classes=59))
