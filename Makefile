# Two commands set everything up on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PIP := $(BIN)/python -m pip --disable-pip-version-check -q

.PHONY: setup test test-fast test-gpu gpu-check check-cuda-build demo data-trees demo-trees bench clean

setup: $(STAMP)

# MXNet 1.9 needs numpy < 1.24, which has no wheels past Python 3.11.
PYTHON_OK := import sys; sys.exit(not (3, 10) <= sys.version_info[:2] <= (3, 11))

$(STAMP): pyproject.toml studies/pyproject.toml constraints.txt
	@$(PYTHON) -c '$(PYTHON_OK)' || { echo "ssd_nobias needs Python 3.10 or 3.11 (MXNet 1.9 needs numpy < 1.24); $(PYTHON) is $$($(PYTHON) -V 2>&1). Run: make PYTHON=python3.11 $(MAKECMDGOALS)" >&2; exit 1; }
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(PIP) install -c constraints.txt -e '.[dev]' -e studies
	$(BIN)/python -c "from ssd_nobias.model import native; print(native.load())"
	touch $(STAMP)

# The whole suite, two test processes (each test file stays in one); what CI runs.
test: setup
	$(BIN)/python -m pytest -q -n 2 --dist loadfile

# The edit-run loop: everything not marked slow (pyproject.toml lists the markers).
test-fast: setup
	$(BIN)/python -m pytest -q -n 2 --dist loadfile -m "not slow"

# On a machine with a GPU and MXNet's CUDA build in .venv (README, "GPUs", says how):
# NoBiasBatchNorm on GPUs against the CPU operator, two GPUs, AMP, export. Skips without a GPU.
test-gpu: setup
	$(BIN)/python -m pytest -q -rs tests/model/test_gpu.py

# The first thing to run on a new GPU, with or without MXNet (tools/gpu_check/run.sh): the GPU
# kernels against the CPU arithmetic, their bits run to run, their speed against PyTorch's
# batch norm + ReLU and the memory bandwidth, compute-sanitizer; writes gpu-check/report.md.
gpu-check:
	tools/gpu_check/run.sh

# Without a GPU: MXNet's CUDA build (mxnet-cu112, 500 MB) in .venv-cu112, importable through
# stand-in CUDA libraries (tools/cuda_stubs.py); the operator built against it, its CPU tests
# run there (the library's C++ ABI with that libmxnet.so, the "gpu" registration in a CUDA
# build, the reason it gives for having no GPU). Not part of `make test`: a large download.
CU_VENV := .venv-cu112
CU_PIP := $(CU_VENV)/bin/python -m pip --disable-pip-version-check -q
check-cuda-build: setup
	test -x $(CU_VENV)/bin/python || $(PYTHON) -m venv $(CU_VENV)
	$(CU_PIP) install -c constraints.txt -e '.[dev]'
	# mxnet and mxnet-cu112 share the mxnet/ package directory: the CPU wheel goes, the CUDA one
	# is (re)installed over whatever the line above left
	$(CU_PIP) uninstall -y mxnet
	$(CU_PIP) install --no-deps --force-reinstall mxnet-cu112==1.9.1 nvidia-cuda-runtime-cu11==11.8.89
	libs=$$($(CU_VENV)/bin/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])') && \
	$(CU_VENV)/bin/python tools/cuda_stubs.py $$libs/mxnet/libmxnet.so $(CU_VENV)/cuda-stubs && \
	LD_LIBRARY_PATH=$(CU_VENV)/cuda-stubs:$$libs/nvidia/cuda_runtime/lib:$$libs/nvidia/cuda_nvrtc/lib \
	SSD_NOBIAS_BUILD_DIR=$(CU_VENV)/nobias-build $(CU_VENV)/bin/python -m pytest -q \
		-p no:cacheprovider tests/model/test_norm.py tests/model/test_native.py tests/model/test_gpu_compute.py \
		tests/model/test_ssd.py tests/export/test_deploy.py tests/model/test_gpu.py

# The demo: synthetic data (generated once), a bias-free SSD trained on the CPU, exported
# (deploy graph + ONNX, accelerator graph in float32 and INT8 + host part), audited, evaluated.
DEMO_DATA := data/synthetic
DEMO_MODEL := ssd_300_mobilenet0.25_custom
# MXNet's default OpenMP thread count can be below the core count: use every core.
CORES := OMP_NUM_THREADS=$${OMP_NUM_THREADS:-$$(nproc)}
demo: setup
	test -f $(DEMO_DATA)/classes.txt || \
		$(BIN)/python scripts/make_synthetic_voc.py --out $(DEMO_DATA) --train 1000 --val 100
	$(CORES) $(BIN)/python scripts/train_ssd.py --config configs/demo_synthetic.yaml
	$(CORES) $(BIN)/python scripts/export_ssd.py --config configs/demo_synthetic.yaml \
		--params runs/demo/demo-best.params --out runs/demo/export --formats onnx accelerator int8 \
		--eval
	$(BIN)/python scripts/audit_params.py --params runs/demo/export/$(DEMO_MODEL)-0000.params --summary \
		--symbol runs/demo/export/$(DEMO_MODEL)-symbol.json --expect-bias-free '*features*'
	$(BIN)/python scripts/audit_params.py --accelerator runs/demo/export/accelerator --int8 --summary
	$(CORES) $(BIN)/python scripts/eval_ssd.py --config configs/demo_synthetic.yaml \
		--params runs/demo/demo-best.params --out runs/demo

# Real pixels: NEON aerial tiles of tree crowns from the deepforest wheel (pinned, sha256
# checked, 20 MB, downloaded once into data/cache), a bias-free SSD trained on them, exported
# (deploy graph, ONNX, INT8 accelerator pair), evaluated on the held-out test band and on the
# other sites, detections drawn on the real imagery (runs/trees/test/detections.png).
TREES_DATA := data/neon_trees
TREES_MODEL := ssd_300_mobilenet0.25_custom
data-trees: setup
	test -f $(TREES_DATA)/summary.json || \
		$(BIN)/python scripts/make_neon_trees.py --out $(TREES_DATA) --cache data/cache
	$(BIN)/python scripts/check_dataset.py --config configs/neon_trees.yaml

demo-trees: data-trees
	$(CORES) $(BIN)/python scripts/train_ssd.py --config configs/neon_trees.yaml
	$(CORES) $(BIN)/python scripts/export_ssd.py --config configs/neon_trees.yaml \
		--params runs/trees/trees-last.params --out runs/trees/export --formats onnx accelerator int8 \
		--eval
	$(BIN)/python scripts/audit_params.py --accelerator runs/trees/export/accelerator --int8 --summary
	$(CORES) $(BIN)/python scripts/eval_ssd.py --config configs/neon_trees.yaml \
		--params runs/trees/trees-last.params --out runs/trees/test "data.val_splits=[test]"
	$(CORES) $(BIN)/python scripts/eval_ssd.py --config configs/neon_trees.yaml \
		--accelerator runs/trees/export/accelerator --int8 --out runs/trees/test_int8 \
		"data.val_splits=[test]"
	$(CORES) $(BIN)/python scripts/eval_ssd.py --config configs/neon_trees.yaml \
		--params runs/trees/trees-last.params --out runs/trees/test_othersite \
		"data.val_splits=[test_othersite]"

bench: setup
	$(BIN)/python bench/bn_overhead.py
	$(BIN)/python bench/train_throughput.py
	$(BIN)/python bench/deploy_speed.py
	$(BIN)/python bench/dist_scaling.py

clean:
	rm -rf $(VENV) $(CU_VENV) ssd_nobias/_build runs data gpu-check
