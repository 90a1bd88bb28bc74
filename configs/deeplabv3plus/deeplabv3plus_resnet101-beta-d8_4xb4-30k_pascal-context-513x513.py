_base_ = './deeplabv3plus_resnet50-beta-d8_4xb4-30k_pascal-context-513x513.py'
model = dict(
    backbone=dict(
        depth=101,
        init_cfg=dict(
            type='Pretrained',
            checkpoint='checkpoints/resnet_v1_101_beta_imagenet.pth')))
