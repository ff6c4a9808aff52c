# Thin wrapper over CMake.  The two targets the README starts with:
#   make bench    sets up and runs the quick benchmark (the main job)
#   make test     sets up and runs every test: gcc -Werror (with the valgrind
#                 runs, the install test, promtool and pprof checks, the
#                 server's and the module's tests), clang ASan+UBSan, clang
#                 TSan, and 20 s of each libFuzzer target
# Longer runs: make bench-full, make fuzz, make lincheck.
#
# A plain CMake build is for users (no tests, no -Werror, no C++ compiler);
# the test builds here turn on SM_BUILD_TESTS and SM_WERROR.  Each build
# directory is configured on every run, so these options always apply.

JOBS ?= $(shell nproc)
CMAKE ?= cmake

.PHONY: all bench bench-full test test-gcc test-asan test-tsan test-valgrind fuzz clean deps-test deps-bench

all: test

deps-test:
	@sh scripts/deps.sh test
	@sh scripts/deps.sh module

deps-bench:
	@sh scripts/deps.sh bench

TEST_OPTIONS = -DSM_BUILD_TESTS=ON -DSM_WERROR=ON

test-gcc: deps-test
	$(CMAKE) -S . -B build/gcc -DCMAKE_C_COMPILER=gcc -DCMAKE_CXX_COMPILER=g++ -DCMAKE_BUILD_TYPE=RelWithDebInfo $(TEST_OPTIONS)
	$(CMAKE) --build build/gcc -j $(JOBS)
	cd build/gcc && ctest --output-on-failure -j $(JOBS)

test-asan: deps-test
	$(CMAKE) -S . -B build/asan -DCMAKE_C_COMPILER=clang -DCMAKE_CXX_COMPILER=clang++ -DCMAKE_BUILD_TYPE=Debug -DSM_ASAN=ON $(TEST_OPTIONS)
	$(CMAKE) --build build/asan -j $(JOBS)
	cd build/asan && ASAN_OPTIONS=detect_leaks=1:abort_on_error=0 ctest --output-on-failure -j $(JOBS) -E valgrind

# ThreadSanitizer over the tests that use threads and every concurrent-map test.
test-tsan: deps-test
	$(CMAKE) -S . -B build/tsan -DCMAKE_C_COMPILER=clang -DCMAKE_CXX_COMPILER=clang++ -DCMAKE_BUILD_TYPE=RelWithDebInfo -DSM_TSAN=ON $(TEST_OPTIONS)
	$(CMAKE) --build build/tsan -j $(JOBS)
	cd build/tsan && ctest --output-on-failure -j $(JOBS) -R 'thread|cmap'

test-valgrind: test-gcc
	cd build/gcc && ctest --output-on-failure -L valgrind

test: test-gcc test-asan test-tsan test-fuzz

bench: deps-bench
	sh bench/run.sh quick

bench-full: deps-bench
	sh bench/run.sh full

# libFuzzer targets (clang, ASan+UBSan), each with its seed corpus: the map,
# safemapd's RESP parser, its HTTP request parsing and its snapshot and log
# loaders.  make fuzz runs each for FUZZ_SECONDS (600 by default), make
# test-fuzz for 20 s each (part of make test).  Inputs found are kept in
# build/fuzz/corpus-NAME; a crash, leak or time-out fails the run and leaves
# the input in build/fuzz/NAME-*.
FUZZ_SECONDS ?= 600
FUZZ_TARGETS = fuzz/fuzz_map:tests/fuzz/corpus server/fuzz_resp:tests/server/corpus_resp \
               server/fuzz_http:tests/server/corpus_http server/fuzz_persist:tests/server/corpus_persist

.PHONY: fuzz-build test-fuzz
fuzz-build: deps-test
	$(CMAKE) -S . -B build/fuzz -DCMAKE_C_COMPILER=clang -DCMAKE_CXX_COMPILER=clang++ -DSM_BUILD_FUZZ=ON -DSM_ASAN=ON -DSM_BUILD_TESTS=ON -DSM_WERROR=ON
	$(CMAKE) --build build/fuzz -j $(JOBS) --target $(foreach t,$(FUZZ_TARGETS),$(notdir $(firstword $(subst :, ,$(t)))))

fuzz: fuzz-build
	$(MAKE) --no-print-directory fuzz-run FUZZ_SECONDS=$(FUZZ_SECONDS)

test-fuzz: fuzz-build
	$(MAKE) --no-print-directory fuzz-run FUZZ_SECONDS=20

.PHONY: fuzz-run
fuzz-run:
	@set -e; for t in $(FUZZ_TARGETS); do \
	    bin=$${t%%:*}; seeds=$${t#*:}; name=$$(basename $$bin); \
	    mkdir -p build/fuzz/corpus-$$name; \
	    echo "== $$name: $(FUZZ_SECONDS) s"; \
	    if ! build/fuzz/tests/$$bin -artifact_prefix=build/fuzz/$$name- -max_total_time=$(FUZZ_SECONDS) \
	            -print_final_stats=1 build/fuzz/corpus-$$name $$seeds >build/fuzz/$$name.log 2>&1; then \
	        tail -40 build/fuzz/$$name.log; \
	        echo "$$name: found a failing input (build/fuzz/$$name-*, log build/fuzz/$$name.log)"; exit 1; \
	    fi; \
	    grep -E "^Done|number_of_executed_units" build/fuzz/$$name.log; \
	done

# The concurrent map's linearizability check and torn-read test in long
# mode: each program runs LINCHECK_SECONDS (docs/testing-concurrency.md).
LINCHECK_SECONDS ?= 600
.PHONY: lincheck
lincheck: deps-test
	$(CMAKE) -S . -B build/lincheck -DCMAKE_BUILD_TYPE=RelWithDebInfo $(TEST_OPTIONS)
	$(CMAKE) --build build/lincheck -j $(JOBS) --target test_cmap_thread_linear test_cmap_thread_torn
	build/lincheck/tests/test_cmap_thread_linear cmap --seconds=$(LINCHECK_SECONDS)
	build/lincheck/tests/test_cmap_thread_torn --seconds=$(LINCHECK_SECONDS)

clean:
	rm -rf build

# safemapd's container image, an OCI layout built offline from Debian packages
# (scripts/image.sh, docs/server.md), and its check: not part of `make test`.
.PHONY: image test-image bench-server bench-server-check
image:
	@sh scripts/deps.sh image
	sh scripts/image.sh

test-image: image
	sh tests/server/test_image.sh

# safemapd against Redis 7 (scripts/bench_server.sh; bench/results/server.md),
# and the same run gated by bench/server-thresholds.txt.
bench-server:
	@sh scripts/deps.sh server-bench
	sh scripts/bench_server.sh

bench-server-check:
	@sh scripts/deps.sh server-bench
	sh scripts/bench_server.sh --check bench/server-thresholds.txt

# The Redis/Valkey module (docs/module.md).  deps-module fetches the module
# API header (build/deps/redismodule.h) and the servers; test-cluster runs
# the cluster test with 1e6 entries (the suite runs it with 1e5);
# bench-module writes bench/results/module.md.
.PHONY: deps-module module test-cluster bench-module
deps-module:
	@sh scripts/deps.sh module

module: deps-module
	$(CMAKE) -S . -B build/rel -DCMAKE_BUILD_TYPE=RelWithDebInfo
	$(CMAKE) --build build/rel -j $(JOBS) --target safemap_module smr

test-cluster: module
	python3 tests/module/test_cluster.py build/rel/module/safemap.so build/rel/module/smr 1000000

bench-module: module
	python3 bench/module_bench.py build/rel/module/safemap.so bench/results/module.md
