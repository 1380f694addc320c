# editfactory: `make demo` runs the main job on its embedded default, `make test` runs the tests.
# Both create .venv and install the project into it on first use.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
WORKSPACE ?= factory-workspace

comma := ,

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

DEMO_CONCEPTS ?= pencil-sketch,golden-hour,cartoon,sepia
DEMO_SECONDS ?= 120

# The main job on its built-in default, offline: classic-teacher pairs for a few concepts, a short
# base-GAN training run on them, and a held-out evaluation with a source | teacher | student grid.
demo: $(STAMP)
	HF_HUB_OFFLINE=1 $(VENV)/bin/factory --workspace $(WORKSPACE) synth $(subst $(comma), ,$(DEMO_CONCEPTS)) -n 96 --size 128
	HF_HUB_OFFLINE=1 $(VENV)/bin/factory --workspace $(WORKSPACE) base train --concepts $(DEMO_CONCEPTS) \
		--size 128 --steps 400 --seconds $(DEMO_SECONDS) --name demo
	HF_HUB_OFFLINE=1 $(VENV)/bin/factory --workspace $(WORKSPACE) eval pencil-sketch --model demo

clean:
	rm -rf $(VENV) $(WORKSPACE) .pytest_cache
