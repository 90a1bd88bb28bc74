"""The segmentor of TF DeepLab's 8-bit model zoo checkpoints."""
from mmseg.models.segmentors import EncoderDecoder
from mmseg.registry import MODELS

from ..utils.tf_fake_quant import add_tf_fake_quant


@MODELS.register_module()
class TFFakeQuantEncoderDecoder(EncoderDecoder):
    """``EncoderDecoder`` computing as TF's ``contrib.quantize`` eval graph
    (``quantize.md``'s checkpoints, ``--quantize_delay_step=0``): batch
    norms folded into the convs, weights and activations fake-quantised to
    8 bits with the checkpoint's ranges
    (:mod:`deeplabplus_mm.models.utils.tf_fake_quant`). The ranges are
    buffers ``<module>.{weights_quant,act_quant,
    post_activation_bypass_quant}.{min,max}`` that
    ``tools/convert_tf_checkpoint.py`` fills. Inference only.

    Args: those of ``EncoderDecoder``.
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        add_tf_fake_quant(self)
