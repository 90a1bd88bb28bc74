_base_ = './deeplabv3plus_r101-d8_4xb4-300k_coco-voc-513x513.py'
model = dict(
    backbone=dict(dilations=(1, 1, 1, 2), strides=(1, 2, 2, 1)),
    decode_head=dict(dilations=(1, 6, 12, 18)))
