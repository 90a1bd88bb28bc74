_base_ = ('./deeplabv3_mobilenetv3-edgetpu-dm075-d16_4xb2-90k_'
          'cityscapes-769x769.py')
# EdgeTPU-DeepLab-slim evaluated at output stride 32 (70.0 % val).
model = dict(backbone=dict(output_stride=32))
