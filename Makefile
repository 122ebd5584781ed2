# Makefile: thin wrapper over CMake + Ninja. The build lives in build/;
# `make test` also builds and tests build-asan/ (ASan + UBSan).
BUILD      ?= build
ASAN_BUILD ?= build-asan
CLANG_BUILD ?= build-clang
CMAKE_ARGS ?=
JOBS       ?= $(shell nproc)

.PHONY: all bootstrap configure build train test test-release test-asan clang bench clean

all: build

bootstrap:
	tools/bootstrap.sh

configure: bootstrap
	cmake -S . -B $(BUILD) -G Ninja $(CMAKE_ARGS)

build: configure
	cmake --build $(BUILD)

train: build
	$(BUILD)/dbr train --model mlp --epochs 1

test: test-release test-asan

test-release: build
	ctest --test-dir $(BUILD) --output-on-failure -j $(JOBS)

# LeakSanitizer works here (checked by a deliberate leak), so leaks fail tests;
# tests/lsan.supp lists only third-party runtimes (MPI, CUDA driver).
test-asan: bootstrap
	cmake -S . -B $(ASAN_BUILD) -G Ninja -DDBR_SANITIZE=ON $(CMAKE_ARGS)
	cmake --build $(ASAN_BUILD)
	ASAN_OPTIONS=detect_leaks=1 ctest --test-dir $(ASAN_BUILD) --output-on-failure -j $(JOBS)

# Proves the tree builds warning-free (-Werror) with clang as well as gcc.
clang: bootstrap
	cmake -S . -B $(CLANG_BUILD) -G Ninja -DCMAKE_C_COMPILER=clang $(CMAKE_ARGS)
	cmake --build $(CLANG_BUILD)

bench:
	tools/bootstrap.sh --bench
	$(MAKE) build
	BUILD=$(BUILD) bench/run.sh

clean:
	rm -rf $(BUILD) $(ASAN_BUILD) $(CLANG_BUILD)
