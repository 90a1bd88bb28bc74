"""Imported by test configs (``custom_imports``) to train in float64.

Sets torch's default dtype to float64 (parameters and buffers are built in
float64) and registers a data preprocessor that hands the model float64
images. Float64 removes float32 rounding from a comparison of two runs, so
that what remains is the maths (tests/test_distributed.py).
"""
import torch
from mmseg.models import SegDataPreProcessor
from mmseg.registry import MODELS

torch.set_default_dtype(torch.float64)


@MODELS.register_module()
class Float64SegDataPreProcessor(SegDataPreProcessor):

    def forward(self, data, training=False):
        data = super().forward(data, training)
        data['inputs'] = data['inputs'].double()
        return data
