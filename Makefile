# hgrn2: `make` builds ./hgrn2 (the CPU backend always, the CUDA backend when nvcc is found),
# `make setup` installs what a fresh Debian machine lacks and builds, `make test` runs every test.

CC      ?= cc
CFLAGS  ?= -O3 -march=native
CFLAGS  += -std=gnu11 -Wall -Wextra -Wno-unused-parameter -fopenmp -g
LDLIBS  += -lzstd -lpng -lz -lpthread -lm
# PCRE2 and utf8proc serve tokenizer.json's regex pre-tokenizers and Unicode normalizers. Without their headers
# (a machine that has not run make setup) the program still builds, and refuses such tokenizer files.
ifneq ($(wildcard /usr/include/pcre2.h),)
ifneq ($(wildcard /usr/include/utf8proc.h),)
  UNICODE_LIBS = -lpcre2-8 -lutf8proc
endif
endif
ifeq ($(UNICODE_LIBS),)
  CFLAGS  += -DHGRN2_NO_UNICODE_LIBS
endif
LDLIBS  += $(UNICODE_LIBS)
# libjpeg-turbo serves prepare --task imagenet; a build without its header refuses that task.
ifneq ($(wildcard /usr/include/jpeglib.h),)
  JPEG_LIBS = -ljpeg
else
  CFLAGS  += -DHGRN2_NO_JPEG
endif
LDLIBS  += $(JPEG_LIBS)
# MPI serves training over several processes (mpirun -np N ./hgrn2 train, dist.c); its compiler wrapper says
# where the headers and the library are. A build without it runs one process and refuses an mpirun launch.
MPI_CFLAGS := $(shell mpicc --showme:compile 2>/dev/null)
MPI_LIBS   := $(shell mpicc --showme:link 2>/dev/null)
ifneq ($(MPI_LIBS),)
  CFLAGS  += -DHGRN2_MPI $(MPI_CFLAGS)
  LDLIBS  += $(MPI_LIBS)
endif
NVCC    ?= $(shell command -v nvcc 2>/dev/null)

# The library: every C source but hgrn2.c, which holds main. A new source file is added here.
LIB_SRC = common.c cpu.c cpu_mixer.c cpu_cls.c backend.c model.c cls.c cls_run.c cls_ckpt.c cmd_cls.c cmd_plot.c checkpoint.c train.c cli.c \
          cmd_hf.c cmd_data.c shard.c loader.c input.c prepare.c examples.c lra.c listops.c images.c pathfinder.c cmd_tasks.c jpeg.c imagenet.c imloader.c augment.c tokenizer.c tokenizer_hf.c tokenizer_json.c json.c hf.c mqar.c \
          zeroshot.c dist.c cmd_sample.c cmd_bench.c
HDR     = $(wildcard *.h)
BIN     = tests/bin

ifneq ($(NVCC),)
ifneq ($(wildcard kernels.cu),)
  CUDA_OBJ = build/kernels$(if $(CUDNN_OBJ),-cudnn).o
  CFLAGS  += -DHGRN2_CUDA
  CUDA_HOME ?= $(patsubst %/bin/nvcc,%,$(NVCC))
  LDLIBS  += -L$(CUDA_HOME)/lib64 -lcudart -lcublas -lcublasLt -lstdc++
  # NCCL serves training over several GPUs (cuda/nccl.cuh); a CUDA build without its header trains on one
  ifneq ($(wildcard $(CUDA_HOME)/include/nccl.h /usr/include/nccl.h),)
    NCCL_LIBS = -lnccl
    CFLAGS   += -DHGRN2_NCCL
    NVNCCL    = -DHGRN2_NCCL
    LDLIBS   += $(NCCL_LIBS)
  endif
endif
endif
# cuDNN's fused attention (cuda/attention_cudnn.cpp) runs the Transformer++'s attention under --precision bf16,
# through the cuDNN frontend (header-only C++ graph API; make setup fetches version CUDNN_FE_VERSION into
# CUDNN_FE_DIR) and cuDNN itself (header and library from the CUDA install or the system). A CUDA build without
# either leaves it out: the fp32 attention kernels then serve every precision. CUDNN=0 leaves it out anyway.
CUDNN_FE_VERSION = 1.32.0
CUDNN_FE_DIR     = build/cudnn_frontend
ifneq ($(CUDA_OBJ),)
ifneq ($(CUDNN),0)
  CUDNN_H   := $(firstword $(wildcard $(CUDA_HOME)/include/cudnn.h /usr/include/cudnn.h /usr/include/x86_64-linux-gnu/cudnn.h))
  CUDNN_LIB := $(firstword $(wildcard $(CUDA_HOME)/lib64/libcudnn.so /usr/lib/x86_64-linux-gnu/libcudnn.so \
                                      $(CUDA_HOME)/lib64/libcudnn.so.9 /usr/lib/x86_64-linux-gnu/libcudnn.so.9))
  ifneq ($(and $(wildcard $(CUDNN_FE_DIR)/include/cudnn_frontend.h),$(CUDNN_H),$(CUDNN_LIB)),)
    CUDNN_OBJ  = build/attention_cudnn.o
    CUDNN_DIR  = $(patsubst %/,%,$(dir $(CUDNN_LIB)))
    CUDNN_LIBS = -L$(CUDNN_DIR) -l:$(notdir $(CUDNN_LIB)) -Wl,-rpath,$(CUDNN_DIR) -lnvrtc   # (the frontend calls NVRTC)
    NVCUDNN    = -DHGRN2_CUDNN
    LDLIBS    += $(CUDNN_LIBS)
  endif
endif
endif
CUDA_OBJ := $(CUDA_OBJ)

# Objects of the program's build (build/cpu, or build/cuda with the CUDA backend: a switch between the two
# never links objects of the other) and of the float64 build the gradient tests use (build/f64), each
# library gathered in an archive so a program links only the parts it uses. A build without PCRE2 and
# utf8proc keeps its objects apart too (-nounicode), so installing them later rebuilds what uses them (the
# same for libjpeg, -nojpeg, and MPI, -nompi).
NOUNI   = $(if $(UNICODE_LIBS),,-nounicode)$(if $(JPEG_LIBS),,-nojpeg)$(if $(MPI_LIBS),,-nompi)
OBJ     = build/$(if $(CUDA_OBJ),cuda,cpu)$(NOUNI)
LIB     = $(OBJ)/libhgrn2.a
LIB_F64 = build/f64$(NOUNI)/libhgrn2.a
# `make` builds the program (the first rule below would otherwise be the default)
.DEFAULT_GOAL := all
# Names the build the programs were last linked for; rewritten when that changes, so that they relink.
BUILD_KIND = build/kind
$(shell mkdir -p build && (echo '$(OBJ) $(CUDNN_OBJ)' | cmp -s - $(BUILD_KIND) || echo '$(OBJ) $(CUDNN_OBJ)' > $(BUILD_KIND)))
# `hgrn2 --version`: the commit (git describe), rewritten only when it changes so that only hgrn2.o rebuilds
VERSION_H = build/version.h
$(shell v="$$(git describe --always --dirty 2>/dev/null || echo unknown)"; \
        printf '#define HGRN2_VERSION "%s"\n' "$$v" | cmp -s - $(VERSION_H) || \
        printf '#define HGRN2_VERSION "%s"\n' "$$v" > $(VERSION_H))
$(OBJ)/hgrn2.o: $(VERSION_H)

.PHONY: all setup test test-gpu bench-tokenizer clean
.DEFAULT_GOAL := all
all: hgrn2
	@echo "built ./hgrn2 (CPU backend$(if $(CUDA_OBJ),; CUDA backend with $(NVCC)$(if $(CUDNN_OBJ),; cuDNN attention (frontend $(CUDNN_FE_VERSION), $(CUDNN_LIB)),; without cuDNN attention: the fp32 attention kernels in every precision$(if $(CUDNN_H),$(if $(CUDNN_LIB),$(if $(filter 0,$(CUDNN)),, (make setup fetches the cuDNN frontend)), (cuDNN library not found)), (cudnn.h not found))),; no CUDA backend: nvcc or kernels.cu not found)$(if $(UNICODE_LIBS),,; without PCRE2 and utf8proc: tokenizer.json files with regex pre-tokenizers or Unicode normalizers are refused, make setup installs them)$(if $(MPI_LIBS),; MPI,; without MPI: one process only, make setup installs Open MPI))"

hgrn2: $(OBJ)/hgrn2.o $(LIB) $(CUDA_OBJ) $(CUDNN_OBJ) $(BUILD_KIND)
	$(CC) $(CFLAGS) -o $@ $(OBJ)/hgrn2.o $(LIB) $(CUDA_OBJ) $(CUDNN_OBJ) $(LDLIBS)

$(OBJ)/%.o: %.c $(HDR)
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) -c -o $@ $<
build/f64$(NOUNI)/%.o: %.c $(HDR)
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) -DHGRN2_F64 -c -o $@ $<
$(LIB): $(LIB_SRC:%.c=$(OBJ)/%.o)
	rm -f $@ && $(AR) rcs $@ $^
$(LIB_F64): $(LIB_SRC:%.c=build/f64$(NOUNI)/%.o)
	rm -f $@ && $(AR) rcs $@ $^

NVFLAGS = -O3 -std=c++17 -gencode arch=compute_80,code=sm_80 -gencode arch=compute_90a,code=sm_90a -lineinfo $(NVNCCL) $(NVCUDNN)
build/kernels.o build/kernels-cudnn.o: kernels.cu $(wildcard cuda/*.cuh) cuda/attention_cudnn.h cuda_ops.h common.h
	@mkdir -p build
	$(NVCC) $(NVFLAGS) -c -o $@ kernels.cu
# the cuDNN frontend is C++ host code only: the host compiler builds it (its own headers warn, so -isystem)
build/attention_cudnn.o: cuda/attention_cudnn.cpp cuda/attention_cudnn.h common.h
	@mkdir -p build
	$(CXX) -O2 -g -std=c++17 -Wall -Wextra -fPIC -DCUDNN_FRONTEND_SKIP_JSON_LIB -isystem $(CUDNN_FE_DIR)/include \
	  -isystem $(dir $(CUDNN_H)) -isystem $(CUDA_HOME)/include -c -o $@ $<

# Debian packages the build, the tests and the default run need, and the Python package the export's
# tokenizer test loads its files with (Hugging Face tokenizers, in the git-ignored virtual environment .venv).
TOKENIZERS_VERSION = 0.23.3
setup:
	@if ! [ -f /usr/include/zstd.h ] || ! command -v bible >/dev/null 2>&1 || ! command -v zstd >/dev/null 2>&1; then \
	  echo "installing libzstd-dev zstd bible-kjv"; \
	  if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq libzstd-dev zstd bible-kjv >/dev/null; \
	fi
	@if ! dpkg -s libpcre2-dev libutf8proc-dev >/dev/null 2>&1; then \
	  echo "installing libpcre2-dev libutf8proc-dev (tokenizer.json regex pre-tokenizers and Unicode normalizers)"; \
	  if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq libpcre2-dev libutf8proc-dev >/dev/null; \
	fi
	@if ! dpkg -s libpng-dev libjpeg62-turbo-dev dataset-fashion-mnist gnuplot-nox >/dev/null 2>&1; then \
	  echo "installing libpng-dev (Pathfinder's PNGs) libjpeg62-turbo-dev (ImageNet's JPEGs) dataset-fashion-mnist gnuplot-nox (hgrn2 plot)"; \
	  if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq libpng-dev libjpeg62-turbo-dev dataset-fashion-mnist gnuplot-nox >/dev/null; \
	fi
	@if ! dpkg -s openmpi-bin libopenmpi-dev >/dev/null 2>&1; then \
	  echo "installing openmpi-bin libopenmpi-dev (training over several processes: mpirun, tests/test_mpi.sh)"; \
	  if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq openmpi-bin libopenmpi-dev >/dev/null; \
	fi
	@if ! dpkg -s clang libclang-rt-dev libomp-dev >/dev/null 2>&1; then \
	  echo "installing clang libclang-rt-dev libomp-dev (make fuzz)"; \
	  if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq clang libclang-rt-dev libomp-dev >/dev/null; \
	fi
	@if ! .venv/bin/python -c 'import tokenizers, sys; sys.exit(tokenizers.__version__ != "$(TOKENIZERS_VERSION)")' >/dev/null 2>&1; then \
	  echo "installing tokenizers==$(TOKENIZERS_VERSION) into .venv (tests/test_hf_tokenizer.sh)"; \
	  if ! python3 -c 'import venv, ensurepip' >/dev/null 2>&1; then \
	    echo "installing python3-venv"; \
	    if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
	    $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq python3-venv >/dev/null; \
	  fi; \
	  { [ -x .venv/bin/pip ] || python3 -m venv .venv; } && .venv/bin/pip install -q tokenizers==$(TOKENIZERS_VERSION); \
	fi
	@if command -v $(or $(NVCC),nvcc) >/dev/null 2>&1; then sh scripts/fetch_cudnn_frontend.sh $(CUDNN_FE_VERSION) $(CUDNN_FE_DIR); fi
	@$(MAKE) --no-print-directory all

# ---- tests: one C program per area (the model and op tests compiled in float64), plus shell tests ----
TESTS = $(BIN)/test_ops $(BIN)/test_attention $(BIN)/test_cls_ops $(BIN)/test_cls $(BIN)/test_model $(BIN)/test_parity $(BIN)/test_tokenizer $(BIN)/test_formats $(BIN)/test_data \
        $(BIN)/test_prepare $(BIN)/test_checkpoint $(BIN)/test_examples $(BIN)/test_lra \
        $(BIN)/test_mqar $(BIN)/test_images $(BIN)/test_jpeg $(BIN)/test_augment

$(BIN)/test_ops $(BIN)/test_attention $(BIN)/test_cls_ops $(BIN)/test_cls $(BIN)/test_model: $(BIN)/%: tests/%.c tests/check.h $(LIB_F64)
	@mkdir -p $(BIN)
	$(CC) $(CFLAGS) -DHGRN2_F64 -o $@ $< $(LIB_F64) $(LDLIBS) $(TEST_WRAP)
# test_cls runs the bf16 scans' ops without their roundings where it takes finite differences (tests/test_cls.c)
$(BIN)/test_cls: TEST_WRAP = -Wl,--wrap=op_lra_bf16_fwd,--wrap=op_lra_bf16_bwd
$(BIN)/test_ops $(BIN)/test_attention $(BIN)/test_cls_ops: tests/fd.h
$(BIN)/test_parity: tests/test_parity.c tests/check.h $(LIB) $(CUDA_OBJ) $(CUDNN_OBJ) $(BUILD_KIND)
	@mkdir -p $(BIN)
	$(CC) $(CFLAGS) -o $@ $< $(LIB) $(CUDA_OBJ) $(CUDNN_OBJ) $(LDLIBS)
$(BIN)/test_tokenizer $(BIN)/test_formats $(BIN)/test_data $(BIN)/test_prepare $(BIN)/test_checkpoint $(BIN)/test_examples \
$(BIN)/test_lra $(BIN)/test_mqar $(BIN)/test_images $(BIN)/test_jpeg $(BIN)/test_augment: $(BIN)/%: tests/%.c tests/check.h tests/child.h $(LIB) $(CUDA_OBJ) $(CUDNN_OBJ) $(BUILD_KIND)
	@mkdir -p $(BIN)
	$(CC) $(CFLAGS) -o $@ $< $(LIB) $(CUDA_OBJ) $(CUDNN_OBJ) $(LDLIBS)
$(BIN)/test_data $(BIN)/test_prepare $(BIN)/test_examples $(BIN)/test_lra $(BIN)/test_images $(BIN)/test_jpeg: tests/files.h
$(BIN)/test_lra $(BIN)/test_images $(BIN)/test_jpeg: tests/data_cmd.h

test: hgrn2 $(TESTS)
	@tests/run.sh

# ---- GPU tests: on a machine with an NVIDIA GPU (sm_90: H100/H200) ----
$(BIN)/test_gpu: tests/test_gpu.cu tests/gpu_check.h tests/gpu_hgru.h tests/gpu_attention.h tests/gpu_xent.h tests/bench_gpu.h $(CUDA_OBJ) $(CUDNN_OBJ) $(BUILD_KIND) cpu.c cpu_mixer.c cpu_cls.c cuda_ops.h $(HDR)
	@mkdir -p $(BIN) build
	$(CC) $(CFLAGS) -c -o build/cpu_test.o cpu.c
	$(CC) $(CFLAGS) -c -o build/cpu_mixer_test.o cpu_mixer.c
	$(CC) $(CFLAGS) -c -o build/cpu_cls_test.o cpu_cls.c
	$(CC) $(CFLAGS) -c -o build/common_test.o common.c
	$(NVCC) $(NVFLAGS) -o $@ tests/test_gpu.cu $(CUDA_OBJ) $(CUDNN_OBJ) build/cpu_test.o build/cpu_mixer_test.o build/cpu_cls_test.o build/common_test.o -lcublas -lcublasLt $(NCCL_LIBS) $(CUDNN_LIBS:-Wl,%=-Xlinker %) -lgomp -lm
# (its own object names: make -j may build it beside test_gpu)
$(BIN)/test_gpu_cls: tests/test_gpu_cls.cu tests/gpu_check.h $(CUDA_OBJ) $(CUDNN_OBJ) $(BUILD_KIND) cpu.c cpu_mixer.c cpu_cls.c cuda_ops.h $(HDR)
	@mkdir -p $(BIN) build
	$(CC) $(CFLAGS) -c -o build/cpu_gpu_cls.o cpu.c
	$(CC) $(CFLAGS) -c -o build/cpu_mixer_gpu_cls.o cpu_mixer.c
	$(CC) $(CFLAGS) -c -o build/cpu_cls_gpu_cls.o cpu_cls.c
	$(CC) $(CFLAGS) -c -o build/common_gpu_cls.o common.c
	$(NVCC) $(NVFLAGS) -o $@ tests/test_gpu_cls.cu $(CUDA_OBJ) $(CUDNN_OBJ) build/cpu_gpu_cls.o build/cpu_mixer_gpu_cls.o build/cpu_cls_gpu_cls.o build/common_gpu_cls.o -lcublas -lcublasLt $(NCCL_LIBS) $(CUDNN_LIBS:-Wl,%=-Xlinker %) -lgomp -lm
# (their CPU side can round its operands to bf16: tests/bf16_emul.h)
BF16_EMUL_WRAP = -Wl,--wrap=op_matmul_fwd,--wrap=op_matmul_fwd_opnd,--wrap=op_matmul_bwd,--wrap=op_hgru_fwd,--wrap=op_hgru_bwd,--wrap=op_attention_fwd,--wrap=op_attention_bwd
$(BIN)/test_gpu_model $(BIN)/test_gpu_cls_model: $(BIN)/%: tests/%.c tests/check.h tests/bf16_emul.h $(LIB) $(CUDA_OBJ) $(CUDNN_OBJ) $(BUILD_KIND)
	@mkdir -p $(BIN)
	$(CC) $(CFLAGS) -o $@ $< $(LIB) $(CUDA_OBJ) $(CUDNN_OBJ) $(LDLIBS) $(BF16_EMUL_WRAP)

test-gpu: hgrn2 $(BIN)/test_gpu $(BIN)/test_gpu_cls $(BIN)/test_gpu_model $(BIN)/test_gpu_cls_model
	$(BIN)/test_gpu
	$(BIN)/test_gpu_cls
	$(BIN)/test_gpu_model
	$(BIN)/test_gpu_cls_model
	compute-sanitizer --tool memcheck --error-exitcode 1 $(BIN)/test_gpu --quick --no-nccl
	compute-sanitizer --tool racecheck --error-exitcode 1 --kernel-name-exclude kns=cudnn_generated $(BIN)/test_gpu --quick --no-nccl
	compute-sanitizer --tool memcheck --error-exitcode 1 $(BIN)/test_gpu_cls --quick
	compute-sanitizer --tool racecheck --error-exitcode 1 $(BIN)/test_gpu_cls --quick

bench-tokenizer: $(BIN)/test_tokenizer
	$(BIN)/test_tokenizer --bench

# (keeps the cuDNN frontend's headers make setup fetched)
clean:
	rm -rf hgrn2 $(BIN) tests/tmp
	find build -mindepth 1 -maxdepth 1 ! -name cudnn_frontend -exec rm -rf {} + 2>/dev/null || true

# ---- fuzzing and sanitizer builds ------------------------------------------------------------------------
# make fuzz [FUZZ_SECONDS=N]: every libFuzzer harness of tests/fuzz, built with clang, ASan and UBSan, runs
#   N seconds (default 60) on its corpus tests/tmp/fuzz-corpus/<target>, seeded by tests/fuzz/seeds.sh;
#   a finding is saved under tests/tmp/fuzz-findings/<target>/ and fails the run (tests/fuzz/run.sh).
# make fuzz-short: the same for about 20 s per target (part of make test, tests/test_fuzz.sh).
# make test-asan: ./hgrn2 and every C test built with ASan and UBSan in build/asan, and the whole suite,
#   C and shell tests, run against them (the fuzz part excepted; ./hgrn2's dense kernels stay uninstrumented
#   unless ASAN_FULL=1: tests/asan.sh says why).
# FUZZ_TARGETS lists the harnesses (tests/fuzz/fuzz_<name>.c).
FUZZ_TARGETS ?= json safetensors tokenizer shard checkpoint cls_checkpoint jsonl examples image jpegs
FUZZ_SECONDS ?= 60
FUZZ_CC      ?= clang
FUZZ_CFLAGS   = -I. -std=gnu11 -O1 -g -fno-omit-frame-pointer -fopenmp -DHGRN2_FUZZ -D'JPEG_PIXELS_MAX=(1u << 22)' $(if $(UNICODE_LIBS),,-DHGRN2_NO_UNICODE_LIBS) $(if $(JPEG_LIBS),,-DHGRN2_NO_JPEG) \
                -fsanitize=address,undefined -fno-sanitize-recover=all
FUZZ_OBJ      = $(patsubst %.c,build/fuzz/%.o,$(LIB_SRC))
FUZZ_BIN      = $(FUZZ_TARGETS:%=build/fuzz/fuzz_%)
ASAN_CFLAGS   = -O1 -g -march=native -fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer

.PHONY: fuzz fuzz-short fuzz-build fuzz-seeds test-asan
.SECONDARY: $(FUZZ_OBJ)
build/fuzz/%.o: %.c $(HDR)
	@mkdir -p build/fuzz
	$(FUZZ_CC) $(FUZZ_CFLAGS) -fsanitize=fuzzer-no-link -c -o $@ $<
build/fuzz/fuzz_%: tests/fuzz/fuzz_%.c tests/fuzz/fuzz.h tests/fuzz/seal_checkpoint.h $(FUZZ_OBJ)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -fsanitize=fuzzer -Wl,--wrap=fopen,--wrap=fclose -o $@ $< $(FUZZ_OBJ) -lzstd -lpng -lz $(JPEG_LIBS) $(UNICODE_LIBS) -lpthread -lm

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
	@tests/asan.sh "$(CC)" "$(ASAN_CFLAGS)"
