# Quick start: `make demo` (set up .venv/ and run the main job) and `make test` (set up .venv/ and run the tests).
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.cosub_seg-installed
PIP := $(PY) -m pip install --quiet --constraint constraints.txt

.PHONY: install demo demo-onnx test test-fast mutate clean-venv gpu-check

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip "setuptools<81" wheel

# torch first (mmcv builds against it), then mmcv with its ops (built once per machine, then a cached wheel),
# then this package with the rest of the stack.
$(STAMP): $(PY) pyproject.toml constraints.txt tools/install_mmcv.sh
	$(PIP) torch torchvision
	PIP_CONSTRAINT=constraints.txt bash tools/install_mmcv.sh $(PY)
	$(PIP) --no-build-isolation --editable ".[test]"
	touch $(STAMP)

# Offline, `WHEELHOUSE=DIR make install`: from a wheelhouse (tools/make_wheelhouse.sh) into $PYTHON or the Python with
# torch that tools/find_python.sh finds, no index, no .venv/ (tools/install_offline.sh, docs/gpu.md). Only `install`
# and `gpu-check` take WHEELHOUSE; demo and test keep using .venv/.
ifdef WHEELHOUSE
install:
	bash tools/install_offline.sh "$(WHEELHOUSE)"
else
install: $(STAMP)
endif

# The GPU check in one call: install if needed (from $WHEELHOUSE when set), GPU tests, GPU benchmarks; log, JUnit XML,
# the benchmarks' JSON and summary.json in GPU_CHECK_DIR. Refuses without CUDA (docs/gpu.md).
GPU_CHECK_DIR ?= work_dirs/gpu_check
gpu-check:
	bash tools/gpu_check.sh "$(GPU_CHECK_DIR)"

# digits -> cosub pretraining -> UperNet on digit scenes -> report.md / report.json and pictures in work_dirs/demo/
# (about 6 minutes on 2 CPU cores). The ONNX stage (about a minute more) is `make demo-onnx`, after it.
# The demo's data is written once and again only when its writers change (the stamp is written after they succeed).
DEMO_DATA := data/.demo_data_written
$(DEMO_DATA): tools/prepare_data.py cosub_seg/datasets/digits.py cosub_seg/datasets/digit_scenes.py | install
	$(PY) tools/prepare_data.py digits
	touch $(DEMO_DATA)

demo: install $(DEMO_DATA)
	$(PY) tools/pipeline.py configs/pretrain/cosub_deit3-tiny_digits.py \
		configs/seg/upernet_cosub-deit3-tiny_digitscenes.py --work-dir work_dirs/demo --no-onnx

# The demo's exported segmentor without the training stack: model.onnx (checked against PyTorch with ONNX Runtime
# before it is written), then tools/segment.py with ONNX Runtime on the validation scenes.
DEMO_SEGMENTOR := work_dirs/demo/export/segmentor
demo-onnx: install
	@test -f $(DEMO_SEGMENTOR)/config.json || { echo "$(DEMO_SEGMENTOR)/config.json does not exist: run make demo first"; exit 1; }
	$(PY) tools/convert_checkpoint.py onnx $(DEMO_SEGMENTOR)
	$(PY) tools/segment.py $(DEMO_SEGMENTOR) data/digit_scenes/images/validation --out work_dirs/demo/onnx_segment \
		--overlay --backend onnx

test: install
	$(PY) -m pytest

test-fast: install
	$(PY) -m pytest -m "not slow"

# Mutation testing with mutmut ([tool.mutmut] in pyproject.toml): the method and metric modules (cosub/, the
# stochastic-depth wiring, evaluation/, engine/layer_decay.py, checkpoint.py) against their fast tests. Prints the
# surviving mutants and the kill rate. Not in CI (see docs/development.md for how long it takes and when to run it).
mutate: install
	$(PIP) mutmut
	rm -rf mutants
	-$(PY) -m mutmut run --max-children 2
	$(PY) -m mutmut results
	$(PY) -m mutmut export-cicd-stats
	$(PY) -c "import json; s = json.load(open('mutants/mutmut-cicd-stats.json')); \
	print(f\"killed {s['killed']} of {s['total']} mutants ({100 * s['killed'] / s['total']:.1f} %), \
	timed out {s['timeout']}, survived {s['survived']}, no test ran {s['no_tests']}\")"

clean-venv:
	rm -rf $(VENV)
