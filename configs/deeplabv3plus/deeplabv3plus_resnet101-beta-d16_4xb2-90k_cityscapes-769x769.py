_base_ = './deeplabv3plus_resnet50-beta-d16_4xb2-90k_cityscapes-769x769.py'
model = dict(
    backbone=dict(
        depth=101,
        init_cfg=dict(
            type='Pretrained',
            checkpoint='checkpoints/resnet_v1_101_beta_imagenet.pth')))
