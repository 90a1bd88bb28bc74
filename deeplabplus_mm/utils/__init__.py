"""What the tests, the benchmarks and the tools of a checkout share: where
the checkout is, and the benchmarks' machinery
(:mod:`deeplabplus_mm.utils.benchmark`, imported on demand)."""
import os.path as osp

# The checkout this package lives in (configs/, tools/).
REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))

