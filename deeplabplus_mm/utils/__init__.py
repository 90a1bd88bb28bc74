"""What the tests, the benchmarks and the tools of a checkout share: where
the checkout and TensorFlow's reference outputs are, and the benchmarks'
machinery (:mod:`deeplabplus_mm.utils.benchmark`, imported on demand)."""
import os
import os.path as osp

# The checkout this package lives in (configs/, tools/).
REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))


def tf_refs_dir() -> str:
    """``shared/tf_deeplab``, TensorFlow DeepLab's own outputs (the parity
    tests' and benchmarks' references): ``$DEEPLAB_TF_REFS``, else
    ``<checkout>/../shared/tf_deeplab``."""
    return os.environ.get('DEEPLAB_TF_REFS',
                          osp.join(REPO, '..', 'shared', 'tf_deeplab'))
