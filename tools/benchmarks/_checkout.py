"""Import first: puts the checkout on ``sys.path``, so that a benchmark run
as a script (``python tools/benchmarks/NAME.py``, which has only this
folder on the path) imports the ``tools.*`` helpers and this checkout's
package."""
import os.path as osp
import sys

_REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
if _REPO not in sys.path:
    sys.path.insert(0, _REPO)
