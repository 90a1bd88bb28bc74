# The zoo's mobilenetv2_dm05_coco_voc_trainaug (OS 16) / _trainval (OS 8:
# the -d8_ config): depth multiplier 0.5 with TF DeepLab's channel rounding
# (divisible_by 1, min_depth 1: 16, 8, 12, 12, 16 x3, 32 x4, 48 x3, 80 x3,
# 160). No ImageNet checkpoint with these widths is published (slim's
# mobilenet_v2_0.5 rounds to multiples of 8), so the backbone starts from
# scratch here: fine-tune a converted zoo checkpoint with load_from instead.
_base_ = './deeplabv3_mobilenetv2-d16_4xb4-30k_voc12aug-513x513.py'
model = dict(
    backbone=dict(depth_multiplier=0.5, init_cfg=None),
    decode_head=dict(in_channels=160))
