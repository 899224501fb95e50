# sdsbench top-level targets. `make setup` is the one-command set-up (idempotent).
SHELL := /bin/bash
PY_MAIN := .venv/main/bin/python
STATE_DIR ?= .run/services

.PHONY: setup services-up services-down services-status test test-fast

setup:
	bash env/setup.sh

services-up: setup
	$(PY_MAIN) scripts/services.py up --state-dir $(STATE_DIR)

services-down:
	@if [ -x $(PY_MAIN) ]; then $(PY_MAIN) scripts/services.py down --state-dir $(STATE_DIR); fi

services-status:
	$(PY_MAIN) scripts/services.py status --state-dir $(STATE_DIR)

test:
	bash env/setup.sh && $(PY_MAIN) -m pytest -q tests

# The tests that start no server and no JVM (unit tests, analysis, workflow dry runs,
# figures and paper from fabricated runs); only the main virtualenv is set up.
test-fast:
	bash env/setup.sh main && $(PY_MAIN) -m pytest -q -m "not services and not jvm" tests

# ---------------------------------------------------------------- the workflow (Snakemake)
# `make quick` is the README's main command: set-up, then every run, summary, figure,
# table and the paper of the quick profile. Each target is one Snakemake call; runs never
# overlap (--resources bench_slot=1). PROFILE=full selects config/full.yaml for `all`,
# `report` and `clean-results`; figures/<profile>/... picks the profile from the path.
SNAKEMAKE := .venv/main/bin/snakemake
SMK := --cores 2 --resources bench_slot=1 --keep-going
PROFILE ?= quick
# The cluster profile's services (3 Kafka nodes, Flink and Spark standalone clusters) keep
# their state apart from the single-node stack of the other profiles.
CLUSTER_STATE_DIR ?= .run/cluster
profile_config = $(if $(filter full cluster,$(1)),--configfile config/$(1).yaml,)
profile_env = $(if $(filter cluster,$(1)),SDSBENCH_SERVICES_DIR=$(CLUSTER_STATE_DIR),)

.PHONY: all quick full cluster report clean-results

all: setup
	$(call profile_env,$(PROFILE)) $(SNAKEMAKE) all $(SMK) $(call profile_config,$(PROFILE))

quick: setup
	$(SNAKEMAKE) all $(SMK)

full: setup
	$(SNAKEMAKE) all $(SMK) --configfile config/full.yaml

cluster: setup
	$(call profile_env,cluster) $(SNAKEMAKE) all $(SMK) $(call profile_config,cluster)

report: setup
	$(call profile_env,$(PROFILE)) $(SNAKEMAKE) report $(SMK) $(call profile_config,$(PROFILE))

# Some runs of a profile by id, e.g. make runs PROFILE=cluster RUNS="spark-spp-r20000 flink-spp-r20000"
.PHONY: runs
runs: setup
	$(call profile_env,$(PROFILE)) $(SNAKEMAKE) $(addprefix data/$(PROFILE)/raw/,$(RUNS)) $(SMK) \
		$(call profile_config,$(PROFILE))

figures/%: setup
	$(call profile_env,$(firstword $(subst /, ,$*))) $(SNAKEMAKE) $@ $(SMK) \
		$(call profile_config,$(firstword $(subst /, ,$*)))

# ---------------------------------------------------------------- the local cluster
# Start, show and stop the cluster profile's services (config/cluster.yaml) by hand; the
# workflow (`make cluster`) starts them itself when they are not up, and then stops them.
.PHONY: cluster-up cluster-down cluster-status

cluster-up: setup
	$(PY_MAIN) scripts/services.py up --state-dir $(CLUSTER_STATE_DIR) \
		--config config/config.yaml --config config/cluster.yaml

cluster-down:
	@if [ -x $(PY_MAIN) ]; then $(PY_MAIN) scripts/services.py down --state-dir $(CLUSTER_STATE_DIR); fi

cluster-status:
	$(PY_MAIN) scripts/services.py status --state-dir $(CLUSTER_STATE_DIR)

clean-results:
	rm -rf data/$(PROFILE) figures/$(PROFILE) paper/build/$(PROFILE) logs/$(PROFILE)

# ---------------------------------------------------------------- reproducibility check
# Compare the headline numbers of two result sets (two profiles, two machines, two runs);
# A and B are summary directories or headline.csv files. Exit 0: every shared number agrees.
#   make compare A=data/quick/summary B=/path/other/summary
.PHONY: compare
compare: ; $(PY_MAIN) scripts/compare_results.py $(A) $(B)
