# DeepLab pretrains on COCO images relabelled to the 20 VOC classes
# (tools/dataset_converters/coco_voc.py) before fine-tuning on VOC-aug
# (..._coco-voc-pre-voc12aug-...). The papers do not state the COCO
# schedule: 300k iterations at batch 16 is ours.
_base_ = [
    '../_base_/models/deeplabv3plus_resnet50-beta.py',
    '../_base_/datasets/coco_voc.py', '../_base_/default_runtime.py',
    '../_base_/schedules/schedule_300k.py'
]
crop_size = (513, 513)
# Training crops are padded to crop_size; evaluation pads bottom/right to
# (513, 513) as TF DeepLab's eval does (127.5 -> 0 after normalisation), which the
# image pooling averages in: converted model-zoo checkpoints reproduce the
# zoo's figures only with it.
data_preprocessor = dict(size=crop_size, test_cfg=dict(size=(513, 513)))
model = dict(
    data_preprocessor=data_preprocessor, decode_head=dict(num_classes=21))
# TF trains ResNet with weight decay 1e-4 (train.py's weight_decay flag note;
# resnet_arg_scope's default), on conv weights as the other families.
optim_wrapper = dict(optimizer=dict(weight_decay=1e-4))
