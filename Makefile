# Two commands set everything up on a fresh machine: `make engine` and `make test`.
# Both create .venv/ first when it is missing.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
# torch and torchvision must be a matching pair (timm imports torchvision); override on other platforms.
TORCH_PAIR ?= torch==2.14.1 torchvision==0.29.1

CONFIG   ?= fastvit_ma36
WEIGHTS  ?=
FREIHAND ?=
DEXYCB   ?=
CALIB_NUM ?=

.PHONY: install test engine train baseline regress compare lint clean modelopt

# constraints.txt pins the versions the suite was tested with (per platform; torch excepted: TORCH_PAIR).
CONSTRAINTS ?= constraints.txt

$(VENV)/.installed: pyproject.toml $(CONSTRAINTS)
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q -c $(CONSTRAINTS) $(TORCH_PAIR)
	$(PIP) install -q -c $(CONSTRAINTS) -e '.[dev]'
	# tensorrt-stubs declares a dependency on tensorrt itself (not installable from PyPI): stubs only.
	$(PIP) install -q --no-deps 'tensorrt-stubs==10.13.0.35.1'
	touch $@

install: $(VENV)/.installed

# NVIDIA ModelOpt (the INT8 peer, `int8 --quantizer modelopt`) in its own venv: its [onnx] extra pins
# onnx~=1.21 and onnxruntime-gpu~=1.24, which cannot share .venv. Multi-GB (CUDA wheels); CPU calibration works.
MODELOPT_VENV ?= .venv-modelopt
MODELOPT_PIN  ?= nvidia-modelopt[onnx]==0.47.0
$(MODELOPT_VENV)/.installed:
	$(PYTHON) -m venv $(MODELOPT_VENV)
	$(MODELOPT_VENV)/bin/python -m pip install -q --upgrade pip
	$(MODELOPT_VENV)/bin/python -m pip install -q '$(MODELOPT_PIN)'
	touch $@

modelopt: $(MODELOPT_VENV)/.installed

# lint-imports: the layer map in pyproject.toml ([tool.importlinter], docs/architecture.md).
test: $(VENV)/.installed
	$(VENV)/bin/lint-imports
	$(PY) -m pytest -q

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check simplehand_deploy tests benchmarks

engine: $(VENV)/.installed
	$(VENV)/bin/simplehand-deploy engine --config $(CONFIG) \
		$(if $(WEIGHTS),--checkpoint $(WEIGHTS)) $(if $(FREIHAND),--freihand $(FREIHAND)) \
		$(if $(DEXYCB),--dexycb $(DEXYCB)) $(if $(CALIB_NUM),--calib-num $(CALIB_NUM))

# Regression gates. RESULTS: a run folder or the results root (newest run of DEVICE is taken).
RESULTS   ?= benchmarks/results
BASELINES ?= benchmarks/baselines
DEVICE    ?=
LATENCY_TOL ?= 10%
DRIFT_TOL_MM ?= 0.05
REGRESS_FLAGS ?=

baseline: $(VENV)/.installed
	$(VENV)/bin/simplehand-bench baseline --from $(RESULTS) --out $(BASELINES) $(if $(DEVICE),--device $(DEVICE))

regress: $(VENV)/.installed
	$(VENV)/bin/simplehand-bench regress --current $(RESULTS) --baseline $(BASELINES) $(if $(DEVICE),--device $(DEVICE)) \
		--latency-tol $(LATENCY_TOL) --drift-tol-mm $(DRIFT_TOL_MM) --junit runs/regress-junit.xml --markdown runs/regress-summary.md $(REGRESS_FLAGS)

# A/B in one job (shared or virtual runners): BASE and CUR are two ONNX artifacts (or two plans) of one model,
# timed interleaved on this machine; exit 1 when CUR is slower. COMPARE_FLAGS: e.g. --threads 1 --calib DIR ...
BASE ?=
CUR  ?=
COMPARE_FLAGS ?=

compare: $(VENV)/.installed
	@test -n "$(BASE)" && test -n "$(CUR)" || { echo "usage: make compare BASE=main.onnx CUR=pr.onnx [COMPARE_FLAGS=...]" >&2; exit 2; }
	$(VENV)/bin/simplehand-bench compare --baseline $(BASE) --current $(CUR) --latency-tol $(LATENCY_TOL) \
		--drift-tol-mm $(DRIFT_TOL_MM) --junit runs/compare-junit.xml --markdown runs/compare-summary.md $(COMPARE_FLAGS)

STEPS ?= 1000
train: $(VENV)/.installed
	$(VENV)/bin/simplehand-deploy train --config $(CONFIG) --out runs/train-$(CONFIG) --steps $(STEPS) \
		$(if $(FREIHAND),--freihand $(FREIHAND),--synthetic)

clean:
	rm -rf $(VENV) engines/*.onnx engines/*.plan engines/*.json calibration/*/
