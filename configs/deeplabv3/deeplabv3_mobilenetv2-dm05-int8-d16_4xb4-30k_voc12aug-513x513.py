# The zoo's mobilenetv2_dm05_coco_voc_trainaug_8bit (quantize.md; OS 16,
# single scale) computed as TF's 8-bit eval graph: see
# deeplabv3_mobilenetv2-int8-d16_4xb4-30k_voc12aug-513x513.py.
_base_ = './deeplabv3_mobilenetv2-dm05-d16_4xb4-30k_voc12aug-513x513.py'
model = dict(type='TFFakeQuantEncoderDecoder')
fast_inference = False  # the model folds its BNs as TF's 8-bit graph does
