# The two set-up commands: `make demo` and `make test`. Each creates .venv when missing.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
VL := $(VENV)/bin/visionlens
STAMP := $(VENV)/.installed
DEMO := demo

.PHONY: demo test lint bench clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e ".[dev]"
	touch $(STAMP)

demo: $(STAMP)
	mkdir -p $(DEMO)
	$(VL) layers > $(DEMO)/layers.txt
	$(VL) classify chelsea coffee rocket
	$(VL) activations chelsea --layer blocks.2 -o $(DEMO)/activations.png
	$(VL) filters -o $(DEMO)/filters.png
	$(VL) saliency chelsea --method gradient -o $(DEMO)/saliency-gradient.png
	$(VL) saliency chelsea --method smoothgrad -o $(DEMO)/saliency-smoothgrad.png
	$(VL) saliency chelsea --method guided -o $(DEMO)/saliency-guided.png
	$(VL) saliency chelsea --method gradcam -o $(DEMO)/saliency-gradcam.png
	$(VL) saliency chelsea --method guided-gradcam -o $(DEMO)/saliency-guided-gradcam.png
	$(VL) occlusion chelsea --window 16 --stride 8 -o $(DEMO)/occlusion.png
	@echo "pictures in $(abspath $(DEMO))"

test: $(STAMP)
	$(PY) -m ruff check src tests benchmarks
	$(PY) -m pytest

bench: $(STAMP)
	$(PY) benchmarks/attribution.py

clean:
	rm -rf $(DEMO) .pytest_cache
