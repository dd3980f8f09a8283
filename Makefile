# Two commands set everything up on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PIP := $(BIN)/python -m pip --disable-pip-version-check -q

.PHONY: setup test test-gpu demo bench clean

setup: $(STAMP)

$(STAMP): setup.cfg setup.py constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(PIP) install -c constraints.txt -e '.[test,onnx]'
	$(BIN)/python -c "from ssd_nobias import native; print(native.load())"
	touch $(STAMP)

test: setup
	$(BIN)/python -m pytest -q

# On a machine with a GPU and MXNet's CUDA build (pip install mxnet-cu112==1.9.1 in .venv):
# NoBiasBatchNorm on GPUs against the CPU operator, two GPUs, AMP, export. Skips without a GPU.
test-gpu: setup
	$(BIN)/python -m pytest -q -rs tests/test_gpu.py

# The demo: synthetic data (generated once), a bias-free SSD trained on the CPU, exported
# (deploy graph + ONNX), audited, evaluated.
DEMO_DATA := data/synthetic
DEMO_MODEL := ssd_300_mobilenet0.25_custom
# MXNet's default OpenMP thread count can be below the core count: use every core.
CORES := OMP_NUM_THREADS=$${OMP_NUM_THREADS:-$$(nproc)}
demo: setup
	test -f $(DEMO_DATA)/classes.txt || \
		$(BIN)/python scripts/make_synthetic_voc.py --out $(DEMO_DATA) --train 1000 --val 100
	$(CORES) $(BIN)/python scripts/train_ssd.py --config configs/demo_synthetic.yaml
	$(CORES) $(BIN)/python scripts/export_ssd.py --config configs/demo_synthetic.yaml \
		--params runs/demo/demo-best.params --out runs/demo/export --onnx
	$(BIN)/python scripts/audit_params.py runs/demo/export/$(DEMO_MODEL)-0000.params --summary \
		--symbol runs/demo/export/$(DEMO_MODEL)-symbol.json --expect-bias-free '*features*'
	$(CORES) $(BIN)/python scripts/eval_ssd.py --config configs/demo_synthetic.yaml \
		--params runs/demo/demo-best.params --out runs/demo

bench: setup
	$(BIN)/python bench/bn_overhead.py
	$(BIN)/python bench/train_throughput.py
	$(BIN)/python bench/deploy_speed.py
	$(BIN)/python bench/dist_scaling.py
	$(BIN)/python bench/study.py

clean:
	rm -rf $(VENV) ssd_nobias/_build runs data
