_base_ = './deeplabv3plus_resnet50-beta-d16_4xb4-150k_ade20k-513x513.py'
# Output stride 8: TF passes atrous rates 12, 24, 36 explicitly.
model = dict(
    backbone=dict(output_stride=8), decode_head=dict(dilations=(1, 12, 24, 36)))
