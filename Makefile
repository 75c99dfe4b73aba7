# The two README commands:
#   make demo   installs dependencies, builds, and runs the standalone demo
#   make test   installs dependencies, builds, and runs every test (what .ci/run calls)
# One tier at a time (after building): make unit, make bpf-test, make netns-test, make k8s-test.
# make fuzz: every libFuzzer target for FUZZ_SECONDS each (docs/fuzzing.md); make test runs each for 5 s.
BUILD ?= build
JOBS ?= $(shell nproc)
FUZZ_SECONDS ?= 60

.PHONY: deps build demo test unit bpf-test netns-test k8s-test fuzz bench clean

deps:
	bash scripts/install-deps.sh

build: deps
	cmake -S . -B $(BUILD) -G "Unix Makefiles" >/dev/null
	cmake --build $(BUILD) -j $(JOBS)

demo: build
	bash scripts/demo.sh $(BUILD)

test: build
	bash scripts/run-tests.sh $(BUILD)

# The ctest binaries of one tier (tests/CMakeLists.txt): unit_*, bpf_datapath, netns_e2e, k8s_client.
unit: build
	ctest --test-dir $(BUILD) --output-on-failure -R '^unit_'

bpf-test: build
	ctest --test-dir $(BUILD) --output-on-failure -R '^bpf_datapath$$'

netns-test: build
	ctest --test-dir $(BUILD) --output-on-failure --timeout 900 -R '^netns_e2e$$'

k8s-test: build
	ctest --test-dir $(BUILD) --output-on-failure -R '^k8s_client$$'

# Builds its own tree (build-fuzz, clang with sanitizers), not $(BUILD).
fuzz: deps
	JOBS=$(JOBS) bash scripts/fuzz.sh --seconds $(FUZZ_SECONDS)

bench: build
	bash bench/run.sh $(BUILD)

clean:
	rm -rf $(BUILD)
