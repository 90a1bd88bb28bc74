# The zoo's mobilenetv2_coco_voc_trainaug_8bit (quantize.md; OS 16, single
# scale): the float model computed as TF's 8-bit eval graph
# (contrib.quantize.create_eval_graph, --quantize_delay_step=0): batch norms
# folded into the convs, weights and activations fake-quantised with the
# checkpoint's ranges. tools/convert_tf_checkpoint.py fills the ranges.
# Evaluation only: TF's quantisation-aware training is not reproduced (the
# schedule is the float config's; training raises).
_base_ = './deeplabv3_mobilenetv2-d16_4xb4-30k_voc12aug-513x513.py'
model = dict(type='TFFakeQuantEncoderDecoder')
# The model folds its BNs as TF's 8-bit graph does; no other fast path.
fast_inference = False
