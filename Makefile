# The two set-up commands: `make demo` and `make test`. Each creates .venv when missing.
# `make demo` writes the HTML report of the bundled model on the bundled images into demo/;
# `make gallery` writes one picture per technique into docs/gallery.
# `make test` runs ruff, mypy and the whole suite (as CI does); `make test-fast` leaves out the tests
# marked slow (over about 5 s each on 2 CPU cores, the browser tests among them) and so needs
# no chromium. Both run torch on one thread unless OMP_NUM_THREADS says otherwise: the suite's
# small tensors gain nothing from a second thread, and beside any other busy process (a browser,
# image-reading workers) two threads on two cores made it several times slower.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
VL := $(VENV)/bin/visionlens
STAMP := $(VENV)/.installed
DEMO := demo

.PHONY: demo gallery test test-fast bench clean chromium

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e ".[dev]"
	touch $(STAMP)

# Every technique on the bundled model and images, one picture each, written into $(1).
define PICTURES
	mkdir -p $(1)
	$(VL) layers > $(1)/layers.txt
	$(VL) classify chelsea coffee rocket
	$(VL) activations chelsea --layer blocks.2 -o $(1)/activations.png
	$(VL) filters -o $(1)/filters.png
	$(VL) filters --layer blocks.1.0.conv_dw -o $(1)/filters-depthwise.png
	$(VL) saliency chelsea --method gradient -o $(1)/saliency-gradient.png
	$(VL) saliency chelsea --method smoothgrad -o $(1)/saliency-smoothgrad.png
	$(VL) saliency chelsea --method guided -o $(1)/saliency-guided.png
	$(VL) saliency chelsea --method gradcam -o $(1)/saliency-gradcam.png
	$(VL) saliency chelsea --method guided-gradcam -o $(1)/saliency-guided-gradcam.png
	$(VL) saliency coffee --method gradcam -o $(1)/gradcam-coffee.png
	$(VL) occlusion chelsea --window 16 --stride 8 -o $(1)/occlusion.png
	$(VL) evaluate chelsea --methods gradient,ig,gradcam,scorecam,occlusion --metrics deletion,insertion,road --sanity -o $(1)/evaluate.png
	$(VL) visualize --layer blocks.4 --unit 0-7 --steps 256 -o $(1)/visualize-units.png
	$(VL) visualize --layer blocks.5 --unit 3 --diversity 4 --steps 256 -o $(1)/visualize-diversity.png
	$(VL) visualize --class goldfish,daisy,espresso,tabby --steps 256 -o $(1)/visualize-classes.png
	$(VL) dream chelsea --layer blocks.3 -o $(1)/dream.png
	$(VL) invert chelsea --layer blocks.1 -o $(1)/invert-blocks.1.png
	$(VL) invert chelsea --layer blocks.3 -o $(1)/invert-blocks.3.png
	$(VL) gram chelsea --layer blocks.2 -o $(1)/gram.png
	$(VL) texture brick --size 192 -o $(1)/texture-brick.png
	$(VL) texture coffee --size 192 -o $(1)/texture-coffee.png
	$(VL) style chelsea coffee --size 256 -o $(1)/style.png
	$(PY) scripts/gallery_style_strength.py -o $(1)/style-strength.png
	$(VL) neighbors digits --model digits_cnn -k 8 -o $(1)/neighbors-digits.png
	$(VL) embed digits --model digits_cnn --method tsne --mosaic --tiles 400 -o $(1)/embed-digits-tsne.png
	$(VL) neighbors samples -k 4 -o $(1)/neighbors-samples.png
	$(VL) top-patches samples --layer blocks.3 --units 0-7 -k 6 -o $(1)/top-patches-samples.png
	$(PY) scripts/gallery_digits_vit.py
	$(PY) scripts/gallery_swin.py
endef

# The report of the bundled model on a few bundled images (--quick: under 2 minutes on 2 CPU
# cores; a rerun reuses what is already in $(DEMO)). One torch thread by default: beside any
# other busy process, two OpenMP threads on two cores made this small-tensor work over 10x
# slower (measured: more than 15 minutes against 83 s).
demo: $(STAMP)
	OMP_NUM_THREADS=$${OMP_NUM_THREADS:-1} $(VL) report --quick -o $(DEMO)
	@echo "$(abspath $(DEMO))/index.html"

gallery: $(STAMP)
	$(call PICTURES,docs/gallery)

# The browser tests drive Debian's chromium (Playwright's own download does not work here).
chromium:
	command -v chromium >/dev/null || (apt-get update && apt-get install -y chromium)

test: $(STAMP) chromium
	$(PY) -m ruff check src tests benchmarks scripts
	$(PY) -m mypy
	OMP_NUM_THREADS=$${OMP_NUM_THREADS:-1} $(PY) -m pytest

test-fast: $(STAMP)
	$(PY) -m ruff check src tests benchmarks scripts
	$(PY) -m mypy
	OMP_NUM_THREADS=$${OMP_NUM_THREADS:-1} $(PY) -m pytest -m "not slow"

bench: $(STAMP)
	$(PY) -m pip install -q -e ".[bench]"
	$(PY) benchmarks/attribution.py
	$(PY) benchmarks/cams.py
	$(PY) benchmarks/cams.py --model resnet18 --size 224
	$(PY) benchmarks/occlusion.py
	$(PY) benchmarks/synthesis.py
	$(PY) benchmarks/dataset.py

clean:
	rm -rf $(DEMO) .pytest_cache
