# hgrn2: `make` builds ./hgrn2 (the CPU backend always, the CUDA backend when nvcc is found),
# `make setup` installs what a fresh Debian machine lacks and builds, `make test` runs every test.

CC      ?= cc
CFLAGS  ?= -O3 -march=native
CFLAGS  += -std=gnu11 -Wall -Wextra -Wno-unused-parameter -fopenmp -g
LDLIBS  += -lzstd -lpthread -lm
NVCC    ?= $(shell command -v nvcc 2>/dev/null)

SRC     = hgrn2.c common.c cpu.c data.c tokenizer.c json.c hf.c
HDR     = common.h ops.h data.h tokenizer.h json.h hf.h
BIN     = tests/bin

ifneq ($(NVCC),)
ifneq ($(wildcard kernels.cu),)
  CUDA_OBJ = build/kernels.o
  CFLAGS  += -DHGRN2_CUDA
  CUDA_HOME ?= $(patsubst %/bin/nvcc,%,$(NVCC))
  LDLIBS  += -L$(CUDA_HOME)/lib64 -lcudart -lcublas -lcublasLt -lstdc++
endif
endif

.PHONY: all setup test test-gpu bench-tokenizer clean
all: hgrn2
	@echo "built ./hgrn2 (CPU backend$(if $(CUDA_OBJ),; CUDA backend with $(NVCC),; no CUDA backend: nvcc or kernels.cu not found))"

hgrn2: $(SRC) $(HDR) $(CUDA_OBJ)
	$(CC) $(CFLAGS) -o $@ $(SRC) $(CUDA_OBJ) $(LDLIBS)

NVFLAGS = -O3 -std=c++17 -gencode arch=compute_80,code=sm_80 -gencode arch=compute_90a,code=sm_90a -lineinfo
build/kernels.o: kernels.cu cuda_ops.h $(HDR)
	@mkdir -p build
	$(NVCC) $(NVFLAGS) -c -o $@ kernels.cu

# Debian packages the build, the tests and the default run need.
setup:
	@if ! [ -f /usr/include/zstd.h ] || ! command -v bible >/dev/null 2>&1 || ! command -v zstd >/dev/null 2>&1; then \
	  echo "installing libzstd-dev zstd bible-kjv"; \
	  if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq libzstd-dev zstd bible-kjv >/dev/null; \
	fi
	@if ! dpkg -s clang libclang-rt-dev libomp-dev >/dev/null 2>&1; then \
	  echo "installing clang libclang-rt-dev libomp-dev (make fuzz)"; \
	  if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq clang libclang-rt-dev libomp-dev >/dev/null; \
	fi
	@$(MAKE) --no-print-directory all

# ---- tests: one C program per area (the model and op tests compiled in float64), plus shell tests ----
TESTS = $(BIN)/test_ops $(BIN)/test_model $(BIN)/test_parity $(BIN)/test_tokenizer $(BIN)/test_data

$(BIN)/test_ops: tests/test_ops.c cpu.c $(HDR)
	@mkdir -p $(BIN)
	$(CC) $(CFLAGS) -DHGRN2_F64 -o $@ tests/test_ops.c common.c cpu.c $(LDLIBS)
$(BIN)/test_model: tests/test_model.c $(SRC) $(HDR)
	@mkdir -p $(BIN)
	$(CC) $(CFLAGS) -DHGRN2_F64 -o $@ tests/test_model.c common.c cpu.c data.c tokenizer.c json.c hf.c $(LDLIBS)
$(BIN)/test_parity: tests/test_parity.c $(SRC) $(HDR) $(CUDA_OBJ)
	@mkdir -p $(BIN)
	$(CC) $(CFLAGS) -o $@ tests/test_parity.c common.c cpu.c data.c tokenizer.c json.c hf.c $(CUDA_OBJ) $(LDLIBS)
$(BIN)/test_tokenizer: tests/test_tokenizer.c tokenizer.c json.c $(HDR)
	@mkdir -p $(BIN)
	$(CC) $(CFLAGS) -o $@ tests/test_tokenizer.c common.c tokenizer.c json.c $(LDLIBS)
$(BIN)/test_data: tests/test_data.c data.c tokenizer.c json.c $(HDR)
	@mkdir -p $(BIN)
	$(CC) $(CFLAGS) -o $@ tests/test_data.c common.c data.c tokenizer.c json.c $(LDLIBS)

test: hgrn2 $(TESTS)
	@tests/run.sh

# ---- GPU tests: on a machine with an NVIDIA GPU (sm_90: H100/H200) ----
$(BIN)/test_gpu: tests/test_gpu.cu build/kernels.o cpu.c cuda_ops.h $(HDR)
	@mkdir -p $(BIN) build
	$(CC) $(CFLAGS) -c -o build/cpu_test.o cpu.c
	$(CC) $(CFLAGS) -c -o build/common_test.o common.c
	$(NVCC) $(NVFLAGS) -o $@ tests/test_gpu.cu build/kernels.o build/cpu_test.o build/common_test.o -lcublas -lcublasLt -lgomp -lm
$(BIN)/test_gpu_model: tests/test_gpu_model.c $(SRC) $(HDR) $(CUDA_OBJ)
	@mkdir -p $(BIN)
	$(CC) $(CFLAGS) -o $@ tests/test_gpu_model.c common.c cpu.c data.c tokenizer.c json.c hf.c $(CUDA_OBJ) $(LDLIBS)

test-gpu: hgrn2 $(BIN)/test_gpu $(BIN)/test_gpu_model
	$(BIN)/test_gpu
	$(BIN)/test_gpu_model
	compute-sanitizer --tool memcheck --error-exitcode 1 $(BIN)/test_gpu --quick
	compute-sanitizer --tool racecheck --error-exitcode 1 $(BIN)/test_gpu --quick

bench-tokenizer: $(BIN)/test_tokenizer
	$(BIN)/test_tokenizer --bench

clean:
	rm -rf hgrn2 build $(BIN) tests/tmp

# ---- fuzzing and sanitizer builds ------------------------------------------------------------------------
# make fuzz [FUZZ_SECONDS=N]: every libFuzzer harness of tests/fuzz, built with clang, ASan and UBSan, runs
#   N seconds (default 60) on its corpus tests/tmp/fuzz-corpus/<target>, seeded by tests/fuzz/seeds.sh;
#   a finding is saved under tests/tmp/fuzz-findings/<target>/ and fails the run (tests/fuzz/run.sh).
# make fuzz-short: the same for about 20 s per target (part of make test, tests/test_fuzz.sh).
# make test-asan: ./hgrn2 and every C test built with ASan and UBSan in build/asan, and the whole suite,
#   C and shell tests, run against them (the fuzz part excepted; ./hgrn2's dense kernels stay uninstrumented
#   unless ASAN_FULL=1: tests/asan.sh says why).
# FUZZ_TARGETS lists the harnesses (tests/fuzz/fuzz_<name>.c). checkpoint and jsonl are written against
# checkpoint.h (checkpoint_load) and data.h's prepare_scan_jsonl: add them here once those exist.
FUZZ_TARGETS ?= json safetensors tokenizer shard
FUZZ_SECONDS ?= 60
FUZZ_CC      ?= clang
FUZZ_CFLAGS   = -I. -std=gnu11 -O1 -g -fno-omit-frame-pointer -fopenmp -DHGRN2_FUZZ \
                -fsanitize=address,undefined -fno-sanitize-recover=all
FUZZ_OBJ      = $(patsubst %.c,build/fuzz/%.o,$(filter-out hgrn2.c,$(SRC)))
FUZZ_BIN      = $(FUZZ_TARGETS:%=build/fuzz/fuzz_%)
ASAN_CFLAGS   = -O1 -g -march=native -fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer

.PHONY: fuzz fuzz-short fuzz-build fuzz-seeds test-asan
.SECONDARY: $(FUZZ_OBJ)
build/fuzz/%.o: %.c $(HDR)
	@mkdir -p build/fuzz
	$(FUZZ_CC) $(FUZZ_CFLAGS) -fsanitize=fuzzer-no-link -c -o $@ $<
build/fuzz/fuzz_%: tests/fuzz/fuzz_%.c tests/fuzz/fuzz.h $(FUZZ_OBJ)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -fsanitize=fuzzer -Wl,--wrap=fopen,--wrap=fclose -o $@ $< $(FUZZ_OBJ) -lzstd -lpthread -lm

fuzz-build:
	@command -v $(FUZZ_CC) >/dev/null || { echo "$(FUZZ_CC) not found: make setup installs clang"; exit 1; }
	@$(MAKE) --no-print-directory $(FUZZ_BIN)
fuzz-seeds: hgrn2
	@tests/fuzz/seeds.sh
fuzz: fuzz-build fuzz-seeds
	@tests/fuzz/run.sh $(FUZZ_SECONDS) $(FUZZ_TARGETS)
fuzz-short:
	@$(MAKE) --no-print-directory fuzz FUZZ_SECONDS=20

# tests/asan.sh: a copy of the sources in build/asan, built with ASAN_CFLAGS, runs the whole suite.
test-asan:
	@tests/asan.sh "$(CC)" "$(ASAN_CFLAGS)" "$(filter-out cpu.c,$(SRC))"
