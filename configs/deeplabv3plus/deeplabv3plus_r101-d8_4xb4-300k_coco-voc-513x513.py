# DeepLab pretrains on COCO images relabelled to the 20 VOC classes
# (tools/dataset_converters/coco_voc.py) before fine-tuning on VOC-aug
# (..._coco-voc-pre-voc12aug-...). The papers do not state the COCO
# schedule: 300k iterations at batch 16 is ours.
_base_ = [
    '../_base_/models/deeplabv3plus_r101-d8.py',
    '../_base_/datasets/coco_voc.py', '../_base_/default_runtime.py',
    '../_base_/schedules/schedule_300k.py'
]
crop_size = (513, 513)
data_preprocessor = dict(size=crop_size, test_cfg=dict(size=(513, 513)))
model = dict(
    data_preprocessor=data_preprocessor, decode_head=dict(num_classes=21))
