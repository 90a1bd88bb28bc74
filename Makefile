# One command per job: `make demo`, `make test`. Both create .venv on first
# use; a second run installs nothing (the stamp file depends on the
# requirement files and setup.py).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip --disable-pip-version-check
STAMP := $(VENV)/.installed
REQS := $(wildcard requirements/*.txt) setup.py
# mmcv's source build: compiled ops, against the torch already installed.
# Test processes side by side (pytest-xdist; one compute thread each).
TEST_JOBS ?= 2
MMCV_ENV := MMCV_WITH_OPS=1 MAX_JOBS=$(shell nproc 2>/dev/null || echo 2)

.PHONY: install test demo clean

install: $(STAMP)

$(STAMP): $(REQS)
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -r requirements/torch.txt
	$(PIP) install -r requirements/build.txt -r requirements/runtime.txt \
		-r requirements/tests.txt
	$(MMCV_ENV) $(PIP) install --no-build-isolation --no-deps \
		-r requirements/mmcv.txt
	$(PIP) install --no-deps -r requirements/openmmlab.txt
	$(PIP) install --no-deps -r requirements/mim.txt
	$(PIP) install --no-deps --no-build-isolation -e .
	$(PIP) install -r requirements/onnx.txt
	$(PY) -c "import mmcv.ops, mmseg.utils, deeplabplus_mm"
	touch $(STAMP)

test: $(STAMP)
	$(PY) -m pytest -q -n $(TEST_JOBS) --dist loadfile --durations=25 tests

demo: $(STAMP)
	$(PY) tools/demo.py

clean:
	rm -rf $(VENV) work_dirs data/synthvoc
