_base_ = './deeplabv3_mobilenetv3-edgetpu-d16_4xb2-90k_cityscapes-769x769.py'
# The zoo's EdgeTPU-DeepLab evaluated at output stride 32 (70.6 % val).
model = dict(backbone=dict(output_stride=32))
