# editfactory: `make demo` runs the main job on its embedded default, `make test` runs the tests.
# Both create .venv and install the project into it on first use.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
WORKSPACE ?= factory-workspace

.PHONY: install test demo clean

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade --quiet pip
	$(PY) -m pip install --quiet -e '.[test]'
	$(PY) -c "import torch, torchvision, diffusers, peft, kornia, cv2, onnxruntime"
	touch $(STAMP)

test: $(STAMP)
	HF_HUB_OFFLINE=1 $(PY) -m pytest -q

demo: $(STAMP)
	HF_HUB_OFFLINE=1 $(VENV)/bin/factory --workspace $(WORKSPACE) demo

clean:
	rm -rf $(VENV) $(WORKSPACE) .pytest_cache
