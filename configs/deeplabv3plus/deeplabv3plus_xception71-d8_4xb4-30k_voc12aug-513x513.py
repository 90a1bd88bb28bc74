_base_ = './deeplabv3plus_xception65-d8_4xb4-30k_voc12aug-513x513.py'
model = dict(
    backbone=dict(
        arch=71,
        init_cfg=dict(
            type='Pretrained',
            checkpoint='checkpoints/xception71_imagenet.pth')))
