"""The benchmarks (the commands here, run as scripts) and their helpers
(the ``_``-prefixed modules)."""
