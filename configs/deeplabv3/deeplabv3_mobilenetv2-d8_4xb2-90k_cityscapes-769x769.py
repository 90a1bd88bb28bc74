_base_ = './deeplabv3_mobilenetv2-d16_4xb2-90k_cityscapes-769x769.py'
# Output stride 8 (the zoo's multi-scale evaluation); no atrous branch.
model = dict(backbone=dict(output_stride=8))
