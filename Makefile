# editfactory: `make demo` runs the main job on its embedded default, `make test` runs the tests.
# Both create .venv and install the project into it on first use.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
TEST_STAMP := $(VENV)/.installed-test
WORKSPACE ?= factory-workspace

WEB := factory/web
WEB_STAMP := $(WEB)/static/vendor/VERSION.json

.PHONY: install web test demo clean constraints

# the package, and onnxruntime-web for `factory web` when npm is there (`make test` requires it)
install: $(STAMP)
	@$(MAKE) --no-print-directory web || echo "warning: onnxruntime-web not installed (needs Node.js + npm); 'factory web' needs it: 'make web'"

# the package alone (what `make demo` needs) ...
$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade --quiet pip
	$(PY) -m pip install --quiet -c constraints.txt -e .
	$(PY) -c "import torch, torchvision, diffusers, peft, kornia, cv2, onnxruntime"
	$(VENV)/bin/factory photos fetch || echo "warning: no wallpaper photos (apt-get download failed): the default photo set is the 11 wheel photos"
	touch $(STAMP)

# onnxruntime-web for the browser editor (`factory web`): `npm ci` in factory/web/ (the exact versions of
# package-lock.json, from the npm registry), then the wasm build's few files copied to factory/web/static/vendor/
web: $(WEB_STAMP)

$(WEB_STAMP): $(WEB)/package.json $(WEB)/package-lock.json | $(STAMP)
	$(PY) -m factory.web.vendor

# ... and the test extras on top (pytest, selenium for the report's browser test, ray for factory batch,
# ruff and import-linter for the code's shape)
$(TEST_STAMP): $(STAMP)
	$(PY) -m pip install --quiet -c constraints.txt -e '.[test]'
	touch $(TEST_STAMP)

# tests run in TEST_WORKERS processes (pytest-xdist; a test file stays in one process), the cores shared out
TEST_WORKERS ?= 2

test: $(TEST_STAMP) $(WEB_STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/lint-imports
	HF_HUB_OFFLINE=1 $(PY) -m pytest -q --durations=15 -n $(TEST_WORKERS) --dist loadfile

DEMO_CONCEPT ?= autumn
DEMO_SECONDS ?= 120

# The main job on its built-in default, offline: `factory run` on a classic concept that the shipped
# pretrained base and weight generator never saw (see `factory pretrain info`): the classic teacher
# makes pairs from the default photos (`factory photos list`), the weight generator predicts the LoRA from the text, a
# short fine-tune finishes it, and the editor is exported (fp32, int8, .ort), evaluated on held-out
# photos and reported.
demo: install
	HF_HUB_OFFLINE=1 $(VENV)/bin/factory --workspace $(WORKSPACE) run $(DEMO_CONCEPT) --seconds $(DEMO_SECONDS)

clean:
	rm -rf $(VENV) $(WORKSPACE) .pytest_cache $(WEB)/node_modules $(WEB)/static/vendor

# constraints.txt: the versions of the test environment, pinned (run after an upgrade that passed `make test`)
constraints: $(TEST_STAMP)
	{ echo "# The versions CI tested: \`make\` installs with \`pip install -c constraints.txt\`. Regenerate after an upgrade"; \
	  echo "# that passed \`make test\`: \`make constraints\`."; \
	  $(PY) -m pip freeze --exclude-editable | grep -v '@ file'; } > constraints.txt
