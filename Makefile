# vae_tf: `make train` and `make test` install whatever is missing, then run.
#
#   make train                      # trains: python -m vae_tf.train --dataset=fashion_mnist --z_dim=2
#   make train FLAGS="--epochs=1"   # extra flags for vae_tf.train
#   make test                       # ruff, then the whole test suite (PYTEST_ARGS="-k data")
#   make test TEST_WORKERS=1        # in one process (default: one per core, up to 2)
#
# Everything goes into the virtual environment $(VENV); activate it with
# `. .venv/bin/activate` to run `python -m vae_tf.<command>` directly.

PYTHON ?= python3
VENV ?= .venv
FLAGS ?=
PYTEST_ARGS ?=
# pytest-xdist workers: most tests are single-threaded start-up and tracing, so two
# processes on two cores finish the suite sooner than one.
TEST_WORKERS ?= $(shell n=$$(nproc 2>/dev/null || echo 1); [ $$n -gt 2 ] && n=2; echo $$n)
PY := $(VENV)/bin/python
FASHION_MNIST_DIR := /usr/share/datasets/fashion-mnist
# The offline MNIST copy beside a checkout, which CI uses too, unless VAE_TF_DATA_DIR is set.
SHARED_DATASETS := $(abspath ../shared/datasets)
export VAE_TF_DATA_DIR ?= $(if $(wildcard $(SHARED_DATASETS)/mnist),$(SHARED_DATASETS),)
# apt-get when we are root, sudo apt-get when sudo needs no password, else nothing.
APT = $(shell if [ "$$(id -u)" = 0 ]; then echo apt-get; \
              elif sudo -n true 2>/dev/null; then echo "sudo apt-get"; fi)

CHROMIUM := /usr/bin/chromium

.PHONY: install data browser train test clean

install: $(VENV)/.installed data

$(VENV)/.installed: setup.cfg pyproject.toml
	@if ! $(PYTHON) -m venv --clear $(VENV) >/dev/null 2>&1; then \
	  if command -v apt-get >/dev/null && [ -n "$(APT)" ]; then \
	    echo "Installing python3-venv with apt-get..."; \
	    $(APT) update -qq && $(APT) install -y -qq python3-venv >/dev/null; \
	  fi; \
	  $(PYTHON) -m venv --clear $(VENV) || { \
	    echo "error: '$(PYTHON) -m venv' failed; install python3-venv, or pass PYTHON=<a python with venv>."; \
	    exit 1; }; \
	fi
	$(PY) -m pip install --quiet --disable-pip-version-check -e '.[test]'
	@touch $@

data:
	@if [ -f $(FASHION_MNIST_DIR)/train-images-idx3-ubyte.gz ]; then :; \
	elif command -v apt-get >/dev/null && [ -n "$(APT)" ]; then \
	  echo "Installing Fashion-MNIST (dataset-fashion-mnist) with apt-get..."; \
	  $(APT) update -qq && $(APT) install -y -qq dataset-fashion-mnist >/dev/null; \
	else \
	  echo "note: dataset-fashion-mnist is not installed and apt-get is not usable;" \
	       "vae_tf will look in VAE_TF_DATA_DIR, then ask tensorflow-datasets."; \
	fi

# The latent explorer's tests drive Debian's Chromium (Playwright uses it; it downloads none).
browser:
	@if [ -x $(CHROMIUM) ]; then :; \
	elif command -v apt-get >/dev/null && [ -n "$(APT)" ]; then \
	  echo "Installing Chromium (for the explorer's browser tests) with apt-get..."; \
	  $(APT) update -qq && $(APT) install -y -qq chromium >/dev/null; \
	else \
	  echo "note: $(CHROMIUM) is missing and apt-get is not usable; the explorer's browser" \
	       "tests will skip (and fail under CI)."; \
	fi

train: install
	$(PY) -m vae_tf.train --dataset=fashion_mnist --z_dim=2 $(FLAGS)

test: install browser
	$(VENV)/bin/ruff check .
	MPLBACKEND=Agg $(PY) -m pytest -n $(TEST_WORKERS) --dist loadgroup $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
