# drivekit nightly evaluation (included by the top Makefile).
#
#   make nightly RUN=runs/nightly-2026-11-25 SCENES=fixtures/scenes SHARDS=4 BASELINE=runs/nightly-2026-11-24
#
# Simulates every shard in parallel (make -j$(SHARDS) is implied), aggregates the run, explains its
# telemetry, compares it with BASELINE (if given) and writes $(RUN)/nightly_report.md. Exits
# non-zero when a metric regressed beyond its tolerance (NIGHTLY_TOLERANCES). Rerunning after a
# crash resumes: finished shards are kept (stamp files), and simulate reruns only incomplete batches.

RUN ?= runs/nightly-$(shell date +%Y-%m-%d)
SHARDS ?= 2
BASELINE ?=
NIGHTLY_SIM_FLAGS ?= --driver idm --traffic idm --rollouts 4
# e.g. NIGHTLY_TOLERANCES = --tolerance collision_at_fault=0.02 --tolerance progress_rel_to_total=0.05
NIGHTLY_TOLERANCES ?=
NIGHTLY_BIN ?= $(or $(CARGO_TARGET_DIR),target)/debug

NIGHTLY_SHARD_IDS := $(shell seq 0 $$(($(SHARDS) - 1)))
NIGHTLY_STAMPS := $(foreach i,$(NIGHTLY_SHARD_IDS),$(RUN)/.nightly/shard-$(i)-of-$(SHARDS).done)

.PHONY: nightly nightly-build nightly-clean

nightly-build:
	$(CARGO) build --quiet --bins

$(RUN)/.nightly/shard-%-of-$(SHARDS).done: | nightly-build
	@mkdir -p $(dir $@)
	$(NIGHTLY_BIN)/simulate run --scenes $(SCENES) --out $(RUN) --shard $*/$(SHARDS) --run-name $(notdir $(RUN)) --quiet $(NIGHTLY_SIM_FLAGS)
	@touch $@

nightly: nightly-build
	$(MAKE) --no-print-directory -j$(SHARDS) $(NIGHTLY_STAMPS) RUN=$(RUN) SHARDS=$(SHARDS) SCENES=$(SCENES)
	@status=0; \
	$(NIGHTLY_BIN)/aggregate $(RUN) --quiet $(if $(BASELINE),--compare $(BASELINE) $(NIGHTLY_TOLERANCES)) || status=$$?; \
	$(NIGHTLY_BIN)/telemetry $(RUN) > $(RUN)/.nightly/telemetry.txt || true; \
	{ \
	  echo "# Nightly evaluation: $(notdir $(RUN))"; echo; \
	  echo "Scenes: \`$(SCENES)\`, $(SHARDS) shard(s), simulate flags: \`$(NIGHTLY_SIM_FLAGS)\`."; echo; \
	  echo "## Results"; echo; echo '```'; cat $(RUN)/aggregate/metrics_results.txt; echo '```'; echo; \
	  echo "## Telemetry"; echo; echo '```'; cat $(RUN)/.nightly/telemetry.txt; echo '```'; echo; \
	  if [ -n "$(BASELINE)" ]; then sed 's/^# /## /' $(RUN)/aggregate/comparison.md; fi; \
	} > $(RUN)/nightly_report.md; \
	echo "Report: $(RUN)/nightly_report.md"; \
	if [ $$status -eq 3 ]; then echo "nightly: REGRESSION against $(BASELINE) (see the report)" >&2; exit 3; fi; \
	if [ $$status -eq 2 ]; then echo "nightly: aggregation failed" >&2; exit 2; fi; \
	if [ $$status -eq 1 ]; then echo "nightly: some batches failed or are missing (listed in the report)" >&2; exit 1; fi

nightly-clean:
	rm -rf $(RUN)
