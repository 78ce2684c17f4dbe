# make setup | make demo | make test — each builds .venv on its own when it is missing.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
# Development/CI convenience: the workplace's shared data folder, when it sits beside the checkout.
SHARED := $(wildcard ../shared/data)
export SMALLVISION_DATA ?= $(SHARED)

.PHONY: setup demo test test-all test-slow docs lint bench clean

setup: $(STAMP)

$(STAMP): pyproject.toml web-runtime/package-lock.json
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q -e '.[dev,pretrained,docs,runtimes,serve,tune,explain,labels,export,tensorboard,phone]'
	@bash scripts/install-data.sh
	@bash scripts/install-browser.sh
	@bash scripts/install-web-runtime.sh
	@touch $(STAMP)

demo: setup
	@bash scripts/demo.sh

test: setup
	$(BIN)/python -m pytest -q -m "not slow" -n auto --dist worksteal

test-all: setup
	$(BIN)/python -m pytest -q -n auto --dist loadfile

test-slow: setup
	$(BIN)/python -m pytest -q -m slow -n auto --dist loadfile

docs: setup
	$(BIN)/mkdocs build --strict --quiet

lint: setup
	$(BIN)/ruff check src tests benchmarks

clean:
	rm -rf $(VENV) runs .pytest_cache site
