# Two commands set everything up on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PIP := $(BIN)/python -m pip --disable-pip-version-check -q

.PHONY: setup test demo bench clean

setup: $(STAMP)

$(STAMP): setup.cfg setup.py constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(PIP) install -c constraints.txt -e '.[test,onnx]'
	$(BIN)/python -c "from ssd_nobias import native; print(native.load())"
	touch $(STAMP)

test: setup
	$(BIN)/python -m pytest -q

demo: setup
	$(BIN)/python scripts/bias_report.py --model ssd_300_mobilenet1.0_voc

bench: setup
	$(BIN)/python bench/bn_overhead.py

clean:
	rm -rf $(VENV) ssd_nobias/_build runs
