# Two commands do all set-up on a fresh machine:
#   make reproduce   runs the course notebooks headless with papermill (PROFILE=cpu by default;
#                    SEEDS="0 1 2" trains every method with three seeds and judges the claims;
#                    NPROC=8 first trains the profile's runs with torchrun/DDP on 8 GPUs of this node;
#                    RUNS=dir: the root of the run folders, <RUNS>/<profile>/<method>/seed<k>; default runs)
#   make test        runs the test suite
# Both create .venv and install the package with its extras when missing.

PYTHON  ?= python3
VENV    ?= .venv
PROFILE ?= cpu
DEVICE  ?= auto
OUT     ?= output/$(PROFILE)
RUNS    ?= runs
DATA_ROOT ?=
SEEDS   ?=
NPROC   ?=
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed

.PHONY: install reproduce test test-fast lab bench clean-runs

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[notebooks,test]"
	$(BIN)/python -m ipykernel install --sys-prefix --name python3 --display-name "Python 3" >/dev/null
	touch $(STAMP)

install: $(STAMP)

reproduce: $(STAMP)
	$(if $(NPROC),$(BIN)/torchrun --standalone --nproc_per_node=$(NPROC) -m mtlat_edu train-profile --profile $(PROFILE) --device $(DEVICE) --runs $(RUNS) $(if $(DATA_ROOT),--data-root $(DATA_ROOT)) $(if $(SEEDS),--seeds $(SEEDS)))
	$(BIN)/mtlat-edu reproduce --profile $(PROFILE) --device $(DEVICE) --runs $(RUNS) --out $(OUT) $(if $(DATA_ROOT),--data-root $(DATA_ROOT)) $(if $(SEEDS),--seeds $(SEEDS))

test: $(STAMP)
	$(BIN)/python -m pytest -q

test-fast: $(STAMP)
	$(BIN)/python -m pytest -q -m "not e2e"

lab: $(STAMP)
	$(BIN)/jupyter lab notebooks/

bench: $(STAMP)
	$(BIN)/mtlat-edu bench-step --model small_cnn --methods standard mixup tlat mtlat
	$(BIN)/python -m benchmarks.corruptions --size 32

clean-runs:
	rm -rf $(RUNS) output
