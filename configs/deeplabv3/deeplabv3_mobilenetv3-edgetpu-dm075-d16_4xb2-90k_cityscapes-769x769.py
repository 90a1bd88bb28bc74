_base_ = './deeplabv3_mobilenetv3-edgetpu-d16_4xb2-90k_cityscapes-769x769.py'
# EdgeTPU-DeepLab-slim (73.2 % val at OS 16): depth multiplier 0.75
# (channels _make_divisible(c * 0.75, 8): 1280 -> 960 features) and
# aspp_convs_filters 128.
model = dict(
    backbone=dict(depth_multiplier=0.75),
    decode_head=dict(in_channels=960, channels=128))
