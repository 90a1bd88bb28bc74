# COCO-VOC pretraining of the depth multiplier 0.5 model (see
# deeplabv3_mobilenetv2-d16_4xb4-300k_coco-voc-513x513.py).
_base_ = './deeplabv3_mobilenetv2-d16_4xb4-300k_coco-voc-513x513.py'
model = dict(
    backbone=dict(depth_multiplier=0.5, init_cfg=None),
    decode_head=dict(in_channels=160))
