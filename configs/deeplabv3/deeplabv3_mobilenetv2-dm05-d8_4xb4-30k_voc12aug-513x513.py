_base_ = './deeplabv3_mobilenetv2-dm05-d16_4xb4-30k_voc12aug-513x513.py'
# Output stride 8; no atrous branch.
model = dict(backbone=dict(output_stride=8))
