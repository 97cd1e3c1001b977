# StoreBox: the two commands are `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install run test test-fast bench lint format clean fonts mosquitto postgres systemd chromium models screenshots vendor

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

# The box in the foreground; simulated devices in a second process that waits for the box and
# stops with it.
run: $(STAMP)
	@$(BIN)/storebox simulate & sim=$$!; \
	trap 'kill $$sim 2>/dev/null; wait $$sim 2>/dev/null' EXIT INT TERM; \
	$(BIN)/storebox serve --demo

# Debian packages the tests need (a CJK font to render licence images for the OCR tests).
fonts:
	@fc-list 2>/dev/null | grep -qi "Noto Sans CJK" || ls /usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc >/dev/null 2>&1 || \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq fonts-noto-cjk >/dev/null)

# Mosquitto from Debian for the external-broker tests (marker mosquitto, docs/mqtt5.md); test-fast skips them.
mosquitto:
	@command -v mosquitto >/dev/null 2>&1 || test -x /usr/sbin/mosquitto || \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq mosquitto >/dev/null)

# PostgreSQL from Debian for the aggregator's tests (marker postgres): each test run starts its own throwaway
# server on a free port (tools/pgserver.py); nothing needs to be running.
postgres:
	@ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null)

# systemd-analyze and systemd-sysusers for the unit tests (tests/systemd/: systemd-analyze verify on systemd/*).
systemd:
	@command -v systemd-analyze >/dev/null 2>&1 || \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq systemd >/dev/null)

# Chromium from Debian for the browser tests of the page (marker browser, docs/web.md): Playwright drives it by its
# path; Playwright's own browser download is never used.
chromium:
	@test -x /usr/bin/chromium || \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null)

test: $(STAMP) fonts mosquitto postgres systemd chromium
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy --strict edge tools/sim cloud_sync
	$(BIN)/pytest -n 2

test-fast: $(STAMP) fonts
	$(BIN)/pytest -n 2 -m "not slow and not browser and not postgres and not mosquitto"

# Screenshots of every main page in Chinese and English into docs/screenshots/ (a demo box, Debian's Chromium).
screenshots: $(STAMP) fonts chromium
	$(BIN)/python -m tools.screenshots

# Re-vendor the page's front-end libraries from the npm registry (versions in tools/vendor_assets.py).
vendor:
	$(BIN)/python -m tools.vendor_assets

bench: $(STAMP)
	$(BIN)/python -m tools.bench

# Retrain the shipped demand model (models/, docs/forecast-model.md): generated data, NumPy training, ONNX and
# .tflite export, accuracy against seasonal-naive, ETS and the Croston family written into the model card.
models: $(STAMP)
	$(BIN)/pip install --quiet -e '.[train]'
	$(BIN)/python -m tools.train

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

clean:
	rm -rf $(VENV) var .pytest_cache .ruff_cache .hypothesis
