"""The heads' tables: ASPP (+ decoder), Dense Prediction Cell, LR-ASPP;
the scopes only heads have; contrib.quantize's range variables."""
import re
from typing import Dict

from .scopes import ScopeTable


# The decoder and logits, shared by the heads (model.refine_by_decoder:
# separable decoder convs; dense ones are a slim.repeat of two convs).
_DECODER_AND_LOGITS = [
    ('decoder/feature_projection0', 'feature_projection0'),
    ('decoder/decoder_conv{i}_{part}', 'decoder_conv{i}.{part}_conv'),
    ('decoder/decoder_conv0/decoder_conv0_1', 'decoder_conv0'),
    ('decoder/decoder_conv0/decoder_conv0_2', 'decoder_conv1'),
    ('logits/semantic', 'conv_seg', 'plain'),
]
_HEAD_FIELDS = dict(i=r'\d+', part='depthwise|pointwise')

# model.extract_features' ASPP (DeepLabV3PlusTFHead).
ASPP_HEAD = ScopeTable(
    [('image_pooling', 'image_pooling'),
     ('aspp{i}', 'aspp.{i}'),
     ('aspp{i}_{part}', 'aspp.{i}.{part}_conv'),
     ('concat_projection', 'concat_projection')] + _DECODER_AND_LOGITS,
    _HEAD_FIELDS)
# core/dense_prediction_cell.py (DensePredictionCellHead).
DPC_HEAD = ScopeTable(
    [('meta_architecture/branch{i}_{part}', 'branch{i}.{part}_conv'),
     ('meta_architecture/concat_projection', 'concat_projection')] +
    _DECODER_AND_LOGITS, _HEAD_FIELDS)
# model.py with the zoo's MobileNetV3 flags (LRASPPTFHead): no BN in
# image_pooling and the decoder, whose decoder_conv0 gives the logits.
LRASPP_HEAD = ScopeTable(
    [('image_pooling', 'image_pooling', 'plain'),
     ('aspp0', 'aspp0'),
     ('decoder/feature_projection0', 'feature_projection0', 'plain'),
     ('decoder/decoder_conv0', 'conv_seg', 'plain')])
# a checkpoint whose decoder output is the logits holds this (and no
# logits/semantic); its last dimension is the number of classes
SUM_MERGE_LOGITS = 'decoder/decoder_conv0/biases'
# our registered head -> its table
HEADS: Dict[str, ScopeTable] = {
    'DeepLabV3PlusTFHead': ASPP_HEAD,
    'DensePredictionCellHead': DPC_HEAD,
    'LRASPPTFHead': LRASPP_HEAD,
}
# TF scopes that only the heads have (a checkpoint without them is an
# ImageNet backbone).
HEAD_ROOTS = re.compile(r'(image_pooling|aspp\d|concat_projection|decoder|'
                        r'logits|meta_architecture)(/|_)')

# contrib.quantize's range variables (8-bit checkpoints): <scope>/<kind>/
# min|max; the kinds our fake-quantised models hold
# (deeplabplus_mm.archs.fake_quant) map to <module>.<kind>.min|max.
QUANT_RANGE = re.compile(
    r'(?P<scope>.+)/(?P<kind>\w+_quant)/(?P<end>min|max)\Z')
QUANT_KINDS = ('weights_quant', 'act_quant', 'post_activation_bypass_quant')
