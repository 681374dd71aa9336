# Two commands for a fresh machine:  `make book`  and  `make test`;  and `make lab` to run the
# chapters live in JupyterLab (their sliders and widgets need a kernel). Each sets up what it
# needs: a virtual environment with the pinned requirements, the package in editable mode, and
# the ICT-FaceKit morphable model.

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
ICT_COMMIT := da5f95a607f5e6b37755b38d3385d7f2853732e5
# Offline machines keep the archive beside the checkout; elsewhere it is downloaded from GitHub.
ICT_FACEKIT_ARCHIVE ?= $(wildcard ../shared/ict-facekit/ICT-FaceKit-$(ICT_COMMIT).tar.gz)
export ICT_FACEKIT_ARCHIVE
MODEL  := data/ict-facekit/ict_face_mm.npz

.PHONY: book test lab setup model clean-book benchmarks

setup: $(VENV)/.installed

# torch through pip first: pip takes a local wheel where the machine has one (`find-links`), which uv
# does not look for. The rest through uv (pinned), which installs the same pinned versions in about a
# quarter of pip's time on 2 cores (measured 40 s against 3 min); where uv cannot be installed, pip.
# --compile-bytecode as pip does: where PYTHONDONTWRITEBYTECODE is set (this machine kind) every
# kernel and fitting process would otherwise compile every module it imports.
UV_VERSION := 0.13.9
$(VENV)/.installed: requirements.txt pyproject.toml
	test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q "$$(grep -E '^torch==' requirements.txt | cut -d' ' -f1)"
	if $(PY) -m pip install -q uv==$(UV_VERSION); then \
	  $(VENV)/bin/uv pip install -q --compile-bytecode --python $(PY) -r requirements.txt && \
	  $(VENV)/bin/uv pip install -q --python $(PY) --no-deps -e . ; \
	else \
	  $(PY) -m pip install -q -r requirements.txt && $(PY) -m pip install -q --no-deps -e . ; \
	fi
	$(PY) -m ipykernel install --sys-prefix --name python3 >/dev/null
	touch $@

model: setup
	$(PY) -m disentangled_face.shape.ict_facekit

_vendor/plotly.min.js: setup
	mkdir -p _vendor
	cp "$$($(PY) -c 'import plotly, os; print(os.path.join(os.path.dirname(plotly.__file__), "package_data", "plotly.min.js"))')" $@

# MathJax 2.7 with the STIX-Web fonts only (the package ships no TeX fonts): _config.yml tells
# MathJax to use STIX-Web, and this stops the build if the package ever ships other fonts.
_vendor/mathjax/MathJax.js: setup
	mkdir -p _vendor
	rm -rf _vendor/mathjax
	cp -r "$$($(PY) -c 'import jupyter_server_mathjax, os; print(os.path.join(os.path.dirname(jupyter_server_mathjax.__file__), "static"))')" _vendor/mathjax
	test -d _vendor/mathjax/fonts/HTML-CSS/STIX-Web/woff && test -d _vendor/mathjax/jax/output/HTML-CSS/fonts/STIX-Web || \
	  (echo "jupyter-server-mathjax no longer ships the STIX-Web fonts that _config.yml configures"; exit 1)

book: model _vendor/plotly.min.js _vendor/mathjax/MathJax.js
	DISENTANGLED_FACE_STATIC=1 $(VENV)/bin/jupyter-book build . --warningiserror --keep-going || \
	  (cat _build/html/reports/*.log 2>/dev/null | tail -50; exit 1)
	@echo "Book built: _build/html/index.html"

test: model
	$(PY) -m pytest tests --doctest-modules src/disentangled_face --nbval-lax book/ -p no:cacheprovider

# The chapters live: JupyterLab on book/ with the venv's `python3` kernel, without
# DISENTANGLED_FACE_STATIC so the chapters show their ipywidgets. `make lab CHAPTER=01_shape_model`
# opens one chapter; LAB_ARGS passes options to JupyterLab (e.g. LAB_ARGS="--no-browser --port 8890").
# As root (containers) JupyterLab needs --allow-root, added here.
CHAPTER ?=
LAB_ARGS ?=
lab: model
	cd book && env -u DISENTANGLED_FACE_STATIC JUPYTER_PREFER_ENV_PATH=1 $(abspath $(VENV))/bin/jupyter-lab \
	  $(if $(filter 0,$(shell id -u)),--allow-root) $(LAB_ARGS) $(if $(CHAPTER),$(CHAPTER).ipynb)

benchmarks: model
	for b in benchmarks/*.py; do $(PY) $$b || exit 1; done

clean-book:
	rm -rf _build
