# The two commands of the README are `make lab` and `make test`; both create .venv if missing.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
TEST_STAMP := $(VENV)/.installed-tests
NB ?= [0-9]*
NBVAL_FLAGS := --nbval-lax --nbval-current-env --nbval-cell-timeout=300

.PHONY: install lab test test-unit test-notebooks test-mutation browser-test colab-check colab-url notebooks assignments bench weights lint clean

install: $(STAMP)

# Reinstall when the requirements change; `-e .` makes the cvlib package importable.
$(STAMP): requirements.txt pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements.txt
	touch $@

# What only the tests need (tests/requirements.txt), on top of the reader's install.
$(TEST_STAMP): tests/requirements.txt $(STAMP)
	$(PY) -m pip install -q -r tests/requirements.txt
	touch $@

# --allow-root: JupyterLab refuses to start as root (containers, CI) without it.
# tools/jupyterlab-overrides.json: no "news" pop-up on first start, and no autosave (opening
# and running a notebook would otherwise rewrite the committed file; Ctrl+S still saves).
LAB_OVERRIDES := $(VENV)/share/jupyter/lab/settings/overrides.json
$(LAB_OVERRIDES): tools/jupyterlab-overrides.json $(STAMP)
	mkdir -p $(dir $@) && cp $< $@

lab: install $(LAB_OVERRIDES)
	$(VENV)/bin/jupyter lab $(if $(filter 0,$(shell id -u)),--allow-root) notebooks/

test: test-unit test-notebooks

test-unit: $(TEST_STAMP)
	$(PY) -m pytest

# CVLIB_NO_DOWNLOAD=1: the notebooks use only pretrained weights already cached (cvlib.pretrained),
# so a CI machine with a network does not fetch 645 MB and the outputs match the committed ones.
test-notebooks: install
	CVLIB_NO_DOWNLOAD=1 $(PY) -m pytest $(NBVAL_FLAGS) notebooks/

# Mutation testing of cvlib/ops, cvlib/metrics.py and cvlib/weights.py (not part of `make test`):
# do their tests fail when the code changes? Survivors go to bench/results/mutation.json.
# MUTATION_ARGS="--per-file 20" samples 20 mutants per file (all of them take an hour or more).
MUTATION_ARGS ?=
test-mutation: $(TEST_STAMP)
	TQDM_DISABLE=1 $(PY) bench/mutation.py $(MUTATION_ARGS)

# Every notebook in JupyterLab in headless Chromium, every widget moved (tests/browser).
# Needs Debian's or Ubuntu's chromium at /usr/bin/chromium: installed here when missing, which
# needs root (as root, or install it yourself first); and Playwright's Python package (not in
# requirements.txt: readers do not need it). Round-trip timings go to tests/browser/artifacts/
# (ignored); `make bench` copies them to bench/results/.
# WIDGETS=7: the same tests against Colab's widget front end, ipywidgets 7.7, which runs only in
# JupyterLab 3 (tests/browser/widgets7-requirements.txt), from .venv-widgets7, made when missing
# (requirements.txt less its jupyterlab line); its artifacts go to tests/browser/artifacts/widgets7/.
# BROWSER_K="unrun" runs only the tests whose names match (pytest -k), e.g. the unrun pass.
WIDGETS ?= 8
BROWSER_K ?=
VENV7 := .venv-widgets7
STAMP7 := $(VENV7)/.installed
BROWSER_PY := $(if $(filter 7,$(WIDGETS)),$(VENV7)/bin/python,$(PY))

$(STAMP7): requirements.txt pyproject.toml tests/browser/widgets7-requirements.txt
	test -x $(VENV7)/bin/python || $(PYTHON) -m venv $(VENV7)
	$(VENV7)/bin/python -m pip install -q --upgrade pip
	grep -v '^jupyterlab' requirements.txt > $(VENV7)/requirements.txt
	$(VENV7)/bin/python -m pip install -q -r $(VENV7)/requirements.txt -r tests/browser/widgets7-requirements.txt
	touch $@

browser-test: $(if $(filter 7,$(WIDGETS)),$(STAMP7),install)
	@test -x /usr/bin/chromium || { \
	  if [ "$$(id -u)" != 0 ]; then echo "browser-test needs /usr/bin/chromium: run as root, or 'sudo apt-get install --no-install-recommends chromium' first"; exit 1; fi; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium; }
	$(BROWSER_PY) -m pip install -q "playwright>=1.40"
	$(BROWSER_PY) -c "import jupyterlab, ipywidgets; print('browser-test: JupyterLab', jupyterlab.__version__, 'ipywidgets', ipywidgets.__version__)"
	CVLIB_WIDGETS=$(WIDGETS) CVLIB_NO_DOWNLOAD=1 CVLIB_BROWSER_TESTS=1 $(BROWSER_PY) -m pytest tests/browser -v $(if $(BROWSER_K),-k "$(BROWSER_K)")

# The tests and every notebook with Colab's versions (tests/colab-constraints.txt: torch 2.11,
# torchvision 0.26, ipywidgets 7.7) and Colab's Python, 3.13, in .venv-colab. It says which
# interpreter it uses and fails unless that is 3.13 (a pyenv shim without 3.13 selected is not);
# COLAB_PYTHON=/path/to/python uses another one on purpose.
colab-check:
	@py="$(or $(COLAB_PYTHON),python3.13)"; \
	$$py -c 'import sys; print("colab-check: Python", sys.version.split()[0], "at", sys.executable)' 2>/dev/null \
	  || { echo "colab-check: $$py does not run; install Python 3.13 or set COLAB_PYTHON=/path/to/python"; exit 1; }; \
	if [ -z "$(COLAB_PYTHON)" ]; then $$py -c 'import sys; sys.exit(sys.version_info[:2] != (3, 13))' \
	  || { echo "colab-check: $$py is not Python 3.13 (Colab's); set COLAB_PYTHON=... to use it anyway"; exit 1; }; fi; \
	test -x .venv-colab/bin/python || $$py -m venv .venv-colab
	.venv-colab/bin/python -m pip install -q -r requirements.txt -r tests/requirements.txt -c tests/colab-constraints.txt
	.venv-colab/bin/python -c "import sys, torch, torchvision, ipywidgets; print(sys.version.split()[0], torch.__version__, torchvision.__version__, ipywidgets.__version__)"
	.venv-colab/bin/python -m pytest -p no:cacheprovider -q
	.venv-colab/bin/python -m pytest -p no:cacheprovider -q $(NBVAL_FLAGS) notebooks/

# Execute every notebook in place so that the committed outputs are current (NB=02_upsampling
# runs one), after updating each .ipynb from its .py twin; then refresh the twin.
notebooks: install
	@set -e; for py in notebooks/$(NB).py; do \
	  nb=$${py%.py}.ipynb; echo "== $$nb"; \
	  if [ -f $$nb ]; then $(VENV)/bin/jupytext -q --to ipynb --update $$py; else $(VENV)/bin/jupytext -q --to ipynb $$py; fi; \
	  CVLIB_NO_DOWNLOAD=1 TQDM_DISABLE=1 $(VENV)/bin/jupyter nbconvert --to notebook --execute --inplace \
	    --ExecutePreprocessor.timeout=600 $$nb; \
	  $(PY) tools/strip_widget_state.py $$nb; \
	  $(VENV)/bin/jupytext -q --to py:percent $$nb; \
	done

# Point every Colab cell and badge at another repository: make colab-url URL=https://github.com/OWNER/NAME
colab-url:
	@test -n "$(URL)" || { echo "usage: make colab-url URL=https://github.com/OWNER/NAME"; exit 1; }
	python3 tools/set_repository.py $(URL)

# Student versions of the notebooks: assignments/NN_topic.ipynb (+ .py twin), each solution
# between "### BEGIN SOLUTION" and "### END SOLUTION" replaced by a stub raising
# NotImplementedError, outputs cleared (tools/make_assignments.py; nbgrader is not needed).
assignments: install
	$(PY) tools/make_assignments.py

# Speed and quality benchmarks (not part of `make test`); each writes bench/results/NAME.json,
# and the last `make browser-test`'s round trips are copied there too.
bench: install
	@set -e; for script in bench/*.py; do echo "== $$script"; TQDM_DISABLE=1 $(PY) $$script; done
	@if [ -f tests/browser/artifacts/widgets_browser.json ]; then cp tests/browser/artifacts/widgets_browser.json bench/results/; fi

# Retrain every shipped checkpoint (slow; see data/weights/README.md for what each took).
weights: install
	@set -e; for name in $$($(PY) -c "from cvlib.recipes import RECIPES; print(*sorted(RECIPES))"); do \
	  $(PY) -m cvlib.train $$name; done

lint: install
	$(VENV)/bin/ruff check cvlib tests bench

clean:
	rm -rf $(VENV) .venv-colab $(VENV7) .pytest_cache .hypothesis
