"""The tools' shared modules, imported as ``tools.*`` from a checkout.

Not installed: the package ``deeplabplus_mm`` holds what configs and user
code import; what only the tools, the benchmarks and the tests use lives
here (``tools.fixtures``: generated inputs; ``tools.benchmarks``: the
benchmarks' harness; ``tools.dataset_converters``: the conversions). A
tool run as a script has only its own folder on ``sys.path``: it imports
that folder's helper by its plain name, and anything else as ``tools.*``
once the checkout is on the path: a benchmark imports
``tools/benchmarks/_checkout.py`` first, which adds it; ``tools/demo.py``
adds it in ``main()``; the tests' ``conftest.py`` adds it for the tests.
"""
import os.path as osp

# The checkout (configs/, tools/).
REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
