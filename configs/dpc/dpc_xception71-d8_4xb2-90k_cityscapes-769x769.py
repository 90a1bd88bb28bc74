_base_ = './dpc_xception71-d16_4xb2-90k_cityscapes-769x769.py'
# Output stride 8: the backbone runs atrous from entry block 5 on, and the
# cell's rates double (TF's conv_rate_multiplier = 16 // output_stride).
model = dict(
    backbone=dict(output_stride=8), decode_head=dict(output_stride=8))
