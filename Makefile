# Xynergy developer commands. `make help` lists them.
SHELL := /bin/bash
.DEFAULT_GOAL := help
export GOWORK := off
export GOTOOLCHAIN ?= local

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PYTEST_ARGS ?=
# Unit tests run on pytest-xdist workers (they start no processes and share nothing); integration tests run
# in one process, in order, against one local control plane. UNIT_WORKERS=0 runs the unit tests in-process.
UNIT_WORKERS ?= auto

.PHONY: help
help: ## Show this help
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  \033[36m%-14s\033[0m %s\n", $$1, $$2}' $(MAKEFILE_LIST)

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	@touch $(STAMP)

.PHONY: deps
deps: $(STAMP) ## Install whatever is missing: Python venv and packages, system deps (hack/deps/*.sh)
	@for s in hack/deps/*.sh; do [ -e "$$s" ] || continue; bash "$$s" || exit 1; done

.PHONY: controlplane
controlplane: ## Build (or reuse) etcd, kube-apiserver, kube-controller-manager, kube-scheduler, kwok, helm
	@bash hack/controlplane/build.sh

.PHONY: dev
dev: deps ## Main job: build binaries, start the local cluster and the operator (xynergy dev up)
	$(BIN)/xynergy dev up

.PHONY: down
down: ## Stop the local cluster and the operator
	$(BIN)/xynergy dev down

.PHONY: status
status: ## Show what the local cluster runs
	$(BIN)/xynergy dev status

.PHONY: manifests
manifests: $(STAMP) ## Regenerate crds/, the chart's CRDs and docs/api/ from apis/
	$(BIN)/xynergy crds generate

.PHONY: verify
verify: $(STAMP) ## Fail when generated files (crds/, chart CRDs, docs/api/) are stale
	$(BIN)/xynergy crds generate --check

# After the main mypy run, more runs check what it leaves out: the unit tests and bench/. They
# are non-strict and skip the pyproject config (--config-file=): its per-module `strict = true`
# turns strict on for every module. Each has its own cache dir, so the runs do not invalidate
# each other's, and reports only on the files it is given (--follow-imports=silent): what they
# import is checked by the main run, with the pydantic plugin these runs do not load.
#  - Unit tests: one run per folder of TEST_MYPY_DIRS, so that a conftest.py or helper of one name
#    in two folders is not a duplicate module. The tests import their helpers by bare name, as
#    pytest does, and the fakes as fakes.* (tests/ on sys.path): MYPYPATH holds the folder and
#    tests/. With --explicit-package-bases a subfolder's module is named after it
#    (services/gmail/conftest.py is gmail.conftest), so the subfolders' conftest.py do not
#    clash. Then tests/unit/test_test_layout.py, the one test file outside them, on its own.
#  - bench/: the scripts import each other as bench.x (the anomaly_* ones: the repository root
#    on sys.path) or by bare name (bench/ on it), never one module both ways, which would load
#    it twice. mypy gives a file one module name, so two runs: the scripts that import bench.x
#    as package bench (--explicit-package-bases), the others by bare name, where
#    --no-namespace-packages leaves bench.x unresolved (Any) instead of a second name. The
#    benches that drive a local cluster (rollout_e2e, controller_scale, scalingpolicy_scale)
#    also put tests/ and tests/integration/ on sys.path for their helpers (kube_support,
#    prometheus, test_rollout_support, ...): the by-name run has them on MYPYPATH, in that order.
TEST_MYPY_DIRS := intelligence adapters apis providers controllers services
MYPY_NONSTRICT = $(BIN)/mypy --config-file= --python-version 3.11 --ignore-missing-imports \
	--check-untyped-defs --follow-imports=silent
BENCH_AS_PACKAGE = $(shell grep -lE '^[[:space:]]*(from|import) bench\.' bench/*.py)
BENCH_BY_NAME = $(filter-out $(BENCH_AS_PACKAGE),$(wildcard bench/*.py))

.PHONY: lint
lint: $(STAMP) ## ruff (lint + format check), mypy, import-linter
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	@for d in $(TEST_MYPY_DIRS); do \
		echo "mypy (tests, non-strict) tests/unit/$$d"; \
		MYPYPATH=tests/unit/$$d:tests $(MYPY_NONSTRICT) --explicit-package-bases \
			--cache-dir .mypy_cache/tests-$$d tests/unit/$$d || exit 1; \
	done
	@echo "mypy (tests, non-strict) tests/unit/test_test_layout.py"
	@$(MYPY_NONSTRICT) --cache-dir .mypy_cache/tests-layout tests/unit/test_test_layout.py
	@echo "mypy (bench, non-strict) bench/ scripts that import bench.x, as package bench"
	@$(MYPY_NONSTRICT) --explicit-package-bases --cache-dir .mypy_cache/bench-package \
		$(BENCH_AS_PACKAGE)
	@echo "mypy (bench, non-strict) the other bench/ scripts, by bare name"
	@MYPYPATH=tests/integration:tests $(MYPY_NONSTRICT) --no-namespace-packages \
		--cache-dir .mypy_cache/bench-by-name $(BENCH_BY_NAME)
	$(BIN)/lint-imports

.PHONY: fmt
fmt: $(STAMP) ## Format and autofix with ruff
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

.PHONY: test
test: deps controlplane verify lint ## Install what is missing, then run every test (what CI runs)
	@$(BIN)/pytest -m 'unit and not soak' -n $(UNIT_WORKERS) $(PYTEST_ARGS); u=$$?; [ $$u -eq 5 ] && u=0; \
	 $(BIN)/pytest -m 'integration and not soak' $(PYTEST_ARGS); i=$$?; [ $$i -eq 5 ] && i=0; \
	 if [ $$u -ne 0 ]; then echo "unit tests failed (exit $$u)"; exit $$u; fi; exit $$i

.PHONY: test-unit
test-unit: $(STAMP) ## Unit tests only (fast, no external processes)
	@$(BIN)/pytest -m 'unit and not soak' -n $(UNIT_WORKERS) $(PYTEST_ARGS); rc=$$?; [ $$rc -eq 5 ] && rc=0; exit $$rc

.PHONY: test-integration
test-integration: deps controlplane ## Integration tests (local cluster, redis-server, emulators)
	@$(BIN)/pytest -m integration $(PYTEST_ARGS); rc=$$?; [ $$rc -eq 5 ] && rc=0; exit $$rc

.PHONY: images
images: ## Build the operator OCI image without a daemon (mmdebstrap + umoci; .cache/image/oci)
	@bash hack/deps/image-tools.sh
	@if command -v docker >/dev/null 2>&1; then docker build -t ghcr.io/xynergy/operator:dev .; \
	 else bash hack/image/build.sh; fi

.PHONY: soak
soak: deps controlplane ## Long reliability and security runs (pytest -m soak): chaos, faults, fuzzing
	@$(BIN)/pytest -m soak $(PYTEST_ARGS); rc=$$?; [ $$rc -eq 5 ] && rc=0; exit $$rc

.PHONY: clean
clean: ## Remove the venv and caches (keeps the built control-plane binaries)
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
