# drivekit: developer entry points. See README.md.
CARGO ?= cargo
DEMO_RUN ?= fixtures/runs/demo
DEMO_OUT ?= runs/demo
SCENES ?= fixtures/scenes

.PHONY: demo demo-aggregate build test lint fmt bench fixtures clean-demo test-gpu bench-gpu gpu-bundle

# The dev-profile binaries (dependencies optimised): `make demo`, `make test` and the nightly share
# this one build.
DEV_BIN ?= $(or $(CARGO_TARGET_DIR),target)/debug

# make nightly RUN=… SCENES=… SHARDS=… BASELINE=…  (see pipelines/nightly.mk and README)
include pipelines/nightly.mk

## build: the binaries (dev profile, optimised dependencies), showing cargo's progress
build:
	$(CARGO) build --bins

## demo: simulate the bundled real scenes (one shard, IDM driver among IDM traffic, 4 seeded rollouts), aggregate the run, explain its telemetry
demo: build
	rm -rf $(DEMO_OUT)
	$(DEV_BIN)/simulate run --scenes $(SCENES) --out $(DEMO_OUT) --rollouts 4 --driver idm --traffic idm --run-name demo
	$(DEV_BIN)/aggregate $(DEMO_OUT)
	$(DEV_BIN)/telemetry $(DEMO_OUT)
	@echo "Report: $(DEMO_OUT)/aggregate/report.html  Table: $(DEMO_OUT)/aggregate/metrics_results.txt  Plot: $(DEMO_OUT)/aggregate/metrics_results.png"

## demo-aggregate: aggregate the bundled synthetic run (copied to runs/demo-fixture)
demo-aggregate: build
	rm -rf $(DEMO_OUT)-fixture && mkdir -p $(dir $(DEMO_OUT)) && cp -r $(DEMO_RUN) $(DEMO_OUT)-fixture
	$(DEV_BIN)/aggregate $(DEMO_OUT)-fixture

## test: installs or checks what the tests need (scripts/test-deps.sh), runs every test (unit,
##       integration, doc, Python readers of the outputs), compiles the benchmarks, and ends with a
##       summary of the checks that could not run here (SKIPPED; they fail under CI=true)
test:
	CARGO="$(CARGO)" scripts/test.sh

## lint: formatting and clippy with warnings as errors
lint:
	$(CARGO) fmt --check
	$(CARGO) clippy --all-targets -- -D warnings

fmt:
	$(CARGO) fmt

## bench: simulate step benchmark (1K/16K rollouts × 32 actors, 1 and 2 threads; BENCH_ROLLOUTS, BENCH_STEPS,
##        BENCH_THREADS), external-driver benchmark (1/8/64 rollouts against examples/driver_server.py, and one
##        rollout in 16 delayed, pipelined vs lockstep)
##        evaluate benchmark (1K rollouts re-scored at 1/2 threads), video benchmark (frames/s at
##        256 and 512 px) and aggregate benchmark (cold and incremental, 1K/10K/100K rollouts; BENCH_SIZES=…)
# GPU targets run release binaries: built here when cargo exists, else taken from $(BIN) as copied
# by `make gpu-bundle` to a machine without a Rust toolchain.
BIN ?= target/release
GPU_BUNDLE ?= gpu-bundle

$(BIN)/simulate:
	$(CARGO) build --release --bin simulate

## test-gpu: the CUDA kernels against the CPU backend on the bundled scenes (skips without a GPU)
test-gpu: $(BIN)/simulate
	$(BIN)/simulate gpu-check --scenes $(SCENES) --backend cuda

## bench-gpu: agent-steps/s of the CUDA backend and of the CPU backend, 1K/16K/64K rollouts × 32 agents
bench-gpu: $(BIN)/simulate
	$(BIN)/simulate bench-backends --backend cuda --rollouts 1000,16000,64000

## gpu-bundle: release binary + scenes + Makefile in $(GPU_BUNDLE)/, for `make test-gpu bench-gpu BIN=.` there
gpu-bundle: $(BIN)/simulate
	rm -rf $(GPU_BUNDLE) && mkdir -p $(GPU_BUNDLE)/fixtures $(GPU_BUNDLE)/pipelines
	cp $(BIN)/simulate Makefile $(GPU_BUNDLE)/
	cp pipelines/nightly.mk $(GPU_BUNDLE)/pipelines/
	cp -r $(SCENES) $(GPU_BUNDLE)/fixtures/

# Python (the example driver server, polars for AlpaSim-written input) from make test's environment.
BENCH_PATH = PATH="$(CURDIR)/target/test-venv/bin:$$PATH"
bench:
	scripts/test-deps.sh
	$(BENCH_PATH) $(CARGO) bench --bench simulate
	$(BENCH_PATH) $(CARGO) bench --bench driver
	$(BENCH_PATH) $(CARGO) bench --bench evaluate
	$(BENCH_PATH) $(CARGO) bench --bench video
	$(BENCH_PATH) $(CARGO) bench --bench aggregate
	$(BENCH_PATH) $(CARGO) bench --bench import
	$(BENCH_PATH) $(CARGO) bench --bench report

## fixtures: regenerate the bundled demo run with the fixture generator
fixtures:
	rm -rf $(DEMO_RUN)
	$(CARGO) run --quiet --bin drivekit-fixtures -- $(DEMO_RUN) --scenes 8 --rollouts 4 --steps 100 --run-name demo --seed 7

clean-demo:
	rm -rf $(DEMO_OUT)
