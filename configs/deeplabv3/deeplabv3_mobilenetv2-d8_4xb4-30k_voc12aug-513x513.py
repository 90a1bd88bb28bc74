_base_ = './deeplabv3_mobilenetv2-d16_4xb4-30k_voc12aug-513x513.py'
# Output stride 8 (the zoo's multi-scale evaluation): expanded_conv_6 runs at
# stride 1, expanded_conv_7..13 at rate 2, _14..16 at rate 4. The head has no
# atrous branch, so nothing else changes.
model = dict(backbone=dict(output_stride=8))
