"""The MobileNetV3 segmentation head of TF DeepLab (LR-ASPP), as data.

What ``research/deeplab/model.py`` builds with the model zoo's MobileNetV3
flags (``aspp_convs_filters=128``, ``aspp_with_squeeze_and_excitation``,
``image_se_uses_qsigmoid``, ``aspp_with_concat_projection=0``,
``decoder_use_sum_merge``, ``decoder_filters=<classes>``,
``decoder_output_is_logits``; the MobileNetV3 paper's "Lite R-ASPP"):

* ``image_pooling``: ``slim.avg_pool2d`` of the backbone features with a
  kernel fixed by ``image_pooling_crop_size`` (:func:`pooling_kernel`) and
  stride ``image_pooling_stride``, 'VALID'; a 1x1 conv with bias, no BN,
  and ``q_sigmoid`` (``relu6(x + 3) * 0.16667``); resized
  (``align_corners``) to the features' size: a gate;
* ``aspp0``: 1x1 conv + BN (eps 1e-5) + ReLU on the features, times the
  gate (the only ASPP branch: no atrous rates, no concat projection);
* ``decoder/feature_projection0``: 1x1 conv with bias, no BN, no
  activation, from the low-level feature to the classes;
* ``decoder/decoder_conv0``: 1x1 conv with bias on the gated branch
  resized (``align_corners``) to the low-level size, summed with the
  projection: the logits (no ``logits/semantic``). Ours is ``conv_seg``.

Read by :class:`deeplabplus_mm.models.LRASPPTFHead` (which builds its layers
from :func:`lraspp_layers`) and by the converter.
"""
from typing import List, Optional, Sequence, Tuple

from .layers import ConvSpec, scale_dimension

# q_sigmoid in core/utils.py: tf.nn.relu6(x + 3) * 0.16667 (not 1 / 6).
Q_SIGMOID_SCALE = 0.16667


def pooling_kernel(image_pooling_crop_size: Optional[Sequence[int]],
                   output_stride: int) -> Optional[Tuple[int, int]]:
    """The image pooling's kernel: ``image_pooling_crop_size`` scaled to
    the features' resolution (769 at output stride 32: 25x25); None: the
    global average (TF without a crop size)."""
    if image_pooling_crop_size is None:
        return None
    return tuple(scale_dimension(c, 1.0 / output_stride)
                 for c in image_pooling_crop_size)


def lraspp_layers(in_channels: int,
                  channels: int,
                  num_classes: int,
                  c1_in_channels: int) -> List[ConvSpec]:
    """The head's four 1x1 convs, in module order: ``image_pooling`` and
    ``feature_projection0`` plain with bias, ``aspp0`` conv-BN-ReLU, and
    ``conv_seg`` (TF's ``decoder/decoder_conv0``), the logits.

    Raises:
        ValueError: ``c1_in_channels`` < 1 (the decoder is part of it).
    """
    if c1_in_channels <= 0:
        raise ValueError(f'c1_in_channels must be > 0, got '
                         f'{c1_in_channels!r}')
    return [
        ConvSpec('image_pooling', in_channels, channels, 1, norm=False,
                 bias=True),
        ConvSpec('aspp0', in_channels, channels, 1),
        ConvSpec('feature_projection0', c1_in_channels, num_classes, 1,
                 norm=False, bias=True),
        ConvSpec('conv_seg', channels, num_classes, 1, norm=False,
                 bias=True),
    ]


def lraspp_head_convs(in_channels: int,
                      channels: int,
                      num_classes: int,
                      c1_in_channels: int,
                      out_channels: Optional[int] = None,
                      **unused) -> List[ConvSpec]:
    """The convolutions of ``LRASPPTFHead`` (its config arguments)."""
    return lraspp_layers(in_channels, channels, out_channels or num_classes,
                         c1_in_channels)
