# The zoo's mobilenetv3_small_cityscapes_trainfine (evaluated at OS 32,
# single scale): the Large config with mobilenet_v3_small_seg (288 output
# channels; low-level feature layer_4/depthwise_output, 88 channels).
_base_ = ['./lraspp_mobilenetv3-large-d32_4xb2-90k_cityscapes-769x769.py']
model = dict(
    backbone=dict(arch='small'),
    decode_head=dict(in_channels=288, c1_in_channels=88))
