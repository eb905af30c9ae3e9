# memento — top-level entry points. `make demo` and `make test` are the quick start.
SHELL := /bin/bash
BUILD_DIR ?= build
ASAN_DIR ?= build-asan
FUZZ_DIR ?= build-fuzz
JOBS ?= $(shell nproc)
FUZZ_SECONDS ?= 60
CMAKE_FLAGS ?=

# Debian packages the project needs: build, LibTorch with a fast BLAS, tests, benchmarks,
# fuzzing, the PyTorch peer benchmark and the HTML report checks.
DEB_PACKAGES := build-essential cmake ninja-build clang libclang-rt-14-dev \
  libtorch-dev libopenblas0-pthread libgloo-dev zlib1g-dev \
  libcli11-dev nlohmann-json3-dev libfmt-dev libgtest-dev libgmock-dev libbenchmark-dev \
  chromium

SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: all deps build build-core test test-asan test-package demo bench fuzz clean format

all: build

deps:
	@missing=$$(for p in $(DEB_PACKAGES); do \
	    dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q 'install ok installed' || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	  echo "installing:" $$missing; \
	  $(SUDO) apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq $$missing; \
	else echo "all Debian packages present"; fi
	@# npm only when missing: a NodeSource nodejs already ships it and conflicts with Debian's npm.
	@command -v npm >/dev/null || { $(SUDO) apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq npm; }
	@# The report's chart libraries (web/package-lock.json), embedded into the memento binary.
	@if [ ! -f web/node_modules/.package-lock.json ] || [ web/package-lock.json -nt web/node_modules/.package-lock.json ]; then \
	  cd web && npm ci --no-audit --no-fund; else echo "web/node_modules up to date"; fi

$(BUILD_DIR)/build.ninja:
	cmake -S . -B $(BUILD_DIR) -G Ninja -DCMAKE_BUILD_TYPE=Release $(CMAKE_FLAGS)

build: deps $(BUILD_DIR)/build.ninja
	cmake --build $(BUILD_DIR) -j $(JOBS)

build-core:
	cmake -S . -B $(ASAN_DIR) -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
	  -DMEMENTO_CORE_ONLY=ON -DMEMENTO_SANITIZE=ON -DMEMENTO_BENCH=OFF
	cmake --build $(ASAN_DIR) -j $(JOBS)

# Core tests under AddressSanitizer + UBSan (cheap: the core has no LibTorch).
test-asan: deps build-core
	cd $(ASAN_DIR) && ASAN_OPTIONS=detect_leaks=1 ctest --output-on-failure -j $(JOBS)

# The package is real: examples/consumer (a user's own CMake project) builds against the
# installed memento (find_package) and against the source tree (add_subdirectory), and runs.
test-package: build
	cmake --install $(BUILD_DIR) --prefix $(abspath $(BUILD_DIR))/install
	cmake -S examples/consumer -B $(BUILD_DIR)/consumer-installed -G Ninja -DCMAKE_BUILD_TYPE=Release \
	  -DCMAKE_PREFIX_PATH=$(abspath $(BUILD_DIR))/install
	cmake --build $(BUILD_DIR)/consumer-installed -j $(JOBS)
	OMP_NUM_THREADS=1 $(BUILD_DIR)/consumer-installed/memento_consumer
	cmake -S examples/consumer -B $(BUILD_DIR)/consumer-source -G Ninja -DCMAKE_BUILD_TYPE=Release \
	  -DMEMENTO_SOURCE=$(CURDIR)
	cmake --build $(BUILD_DIR)/consumer-source -j $(JOBS)
	OMP_NUM_THREADS=1 $(BUILD_DIR)/consumer-source/memento_consumer

test: build test-asan test-package
	cd $(BUILD_DIR) && OMP_NUM_THREADS=1 ctest --output-on-failure -j $(JOBS)

demo: build
	$(BUILD_DIR)/bin/memento train

bench: build
	bash bench/run.sh $(BUILD_DIR)
	mkdir -p $(BUILD_DIR)/bench
	set -o pipefail; OMP_NUM_THREADS=1 $(BUILD_DIR)/bin/memento bench --model gpt-mini --budgets 30%,50%,70% --steps 3 \
	  --out $(BUILD_DIR)/bench/memento-bench-gpt-mini.json | tee $(BUILD_DIR)/bench/memento-bench-gpt-mini.txt

# memento against PyTorch's checkpoint_sequential, side by side (needs Debian's python3-torch).
.PHONY: bench-peer
bench-peer: build
	bash bench/peer/run.sh $(BUILD_DIR)

# Both fuzzers run FUZZ_SECONDS each. Inputs go up to 256 KiB, and the corpus holds deep
# (70,000 levels) and long (a 200 KB name) documents: nesting and length are attack surfaces.
fuzz: deps
	cmake -S . -B $(FUZZ_DIR) -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_CXX_COMPILER=clang++ \
	  -DMEMENTO_CORE_ONLY=ON -DMEMENTO_FUZZ=ON -DMEMENTO_BENCH=OFF
	cmake --build $(FUZZ_DIR) -j $(JOBS) --target fuzz_profile fuzz_inputs
	mkdir -p $(FUZZ_DIR)/corpus && cp -n examples/profiles/*.json tests/core/fuzz_corpus/* $(FUZZ_DIR)/corpus/ 2>/dev/null || true
	python3 -c "import sys; open(sys.argv[1] + '/deep.json', 'w').write('{\"fixed_bytes\": ' + '['*70000 + ']'*70000 + ', \"stages\": []}'); open(sys.argv[1] + '/long.json', 'w').write('{\"fixed_bytes\": 1, \"stages\": [{\"name\": \"' + 'n'*200000 + '\"}]}'); open(sys.argv[1] + '/sealed.ckpt', 'w').write('memento-sealed\nformat memento.checkpoint\nversion 2\nbytes 5\nfnv1a64 a430d84680aabd0b\n\nhello')" $(FUZZ_DIR)/corpus
	$(FUZZ_DIR)/bin/fuzz_profile -max_total_time=$(FUZZ_SECONDS) -max_len=262144 $(FUZZ_DIR)/corpus
	$(FUZZ_DIR)/bin/fuzz_inputs -max_total_time=$(FUZZ_SECONDS) -max_len=262144 $(FUZZ_DIR)/corpus

format:
	clang-format -i $$(git ls-files '*.h' '*.cpp')

clean:
	rm -rf $(BUILD_DIR) $(ASAN_DIR) $(FUZZ_DIR)
