# The two README commands:
#   make demo   installs dependencies, builds, and runs the standalone demo
#   make test   installs dependencies, builds, and runs every test (what .ci/run calls)
BUILD ?= build
JOBS ?= $(shell nproc)

.PHONY: deps build demo test unit bpf-test netns-test bench clean

deps:
	bash scripts/install-deps.sh

build: deps
	cmake -S . -B $(BUILD) -G "Unix Makefiles" >/dev/null
	cmake --build $(BUILD) -j $(JOBS)

demo: build
	bash scripts/demo.sh $(BUILD)

test: build
	bash scripts/run-tests.sh $(BUILD)

bench: build
	bash bench/run.sh $(BUILD)

clean:
	rm -rf $(BUILD)
