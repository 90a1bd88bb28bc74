# Sourced by the launch scripts (dist_*.sh, slurm_*.sh): which python runs the
# tools. $PYTHON when set; else the environment `make demo` / `make test` made
# (.venv at the repository root); else `python` on PATH. The repository goes
# first on PYTHONPATH, so the tools import this checkout.
TOOLS_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
if [ -z "${PYTHON:-}" ]; then
    if [ -x "$TOOLS_DIR/../.venv/bin/python" ]; then
        PYTHON="$TOOLS_DIR/../.venv/bin/python"
    else
        PYTHON=python
    fi
fi
export PYTHONPATH="$TOOLS_DIR/..${PYTHONPATH:+:$PYTHONPATH}"
