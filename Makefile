# The two commands of the README:
#   make run    set up .venv, build the extension, and run the main job: train a gate network on the bundled digits
#               set, export it, and print its test accuracy and inference throughput (a couple of minutes)
#   make test   set up, then run every check CI runs
# and, for the edit-build-test loop, make check: lint, the import contract, the core crate's tests and the fast
# Python suites (a few minutes once built).
# Everything installs into .venv from PyPI and crates.io; nothing is installed system-wide.

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
export BITLOGIC_DATA ?= $(abspath ../shared/data)

.PHONY: run setup build check lint-imports test test-rust test-aarch64 test-python test-kernels-asan lint bench bench-presets gpu-check

run: build
	mkdir -p build
	$(PY) -m bitlogic train --dataset digits --preset logic-small --epochs 40 --output build/digits.bitlogic --checkpoint build/digits.ckpt

# --no-cache-dir: the pinned tools come as 2.9 GB of wheels (nearly all of it torch's CUDA build and its libraries),
# which pip's cache would otherwise keep beside the 5.7 GB they unpack into.
$(VENV)/.installed: requirements-dev.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --no-cache-dir --upgrade pip
	$(PY) -m pip install --quiet --no-cache-dir -r requirements-dev.txt
	touch $@

setup: $(VENV)/.installed

build: setup
	VIRTUAL_ENV=$(abspath $(VENV)) PATH=$(abspath $(VENV))/bin:$$PATH $(VENV)/bin/maturin develop --release --quiet

lint:
	cargo fmt --all --check
	cargo clippy --workspace --all-targets --locked -- -D warnings
	$(PYTHON) .ci/rust_module_cycles.py rust/bitlogic/src rust/bitlogic-train/src rust/bitlogic-python/src

test-rust:
	cargo test -p bitlogic --profile test-release --locked
	cargo test -p bitlogic-train --profile test-release --locked
	# The loader again with overflow checks on (debug), so an unchecked sum on hostile input panics here.
	cargo test -p bitlogic --locked --test loader_robustness
	cargo run -p bitlogic --profile test-release --locked --example embedded

# The core crate's tests built for aarch64 and run under qemu: the NEON path against the portable one and the
# definitions. The cross toolchain (Debian's rustc-web with its arm64 standard library, gcc-aarch64-linux-gnu,
# qemu-user-static) is unpacked into build/ by .ci/aarch64-toolchain.sh, without root and without installing anything.
AARCH64_TOOLCHAIN := build/aarch64-toolchain
test-aarch64:
	.ci/aarch64-toolchain.sh $(AARCH64_TOOLCHAIN)
	. $(AARCH64_TOOLCHAIN)/env.sh && RUSTFLAGS="-D warnings" cargo test -p bitlogic --profile test-release --locked \
		--target aarch64-unknown-linux-gnu --target-dir target/aarch64

# The Python modules' layering (pyproject.toml, [tool.importlinter]): no cycles, nn -> ops -> gpu, one way.
lint-imports: build
	$(VENV)/bin/lint-imports

test-python: build lint-imports
	$(PY) -m mypy.stubtest bitlogic._native
	$(PY) -m mypy
	$(PY) -m pytest -q

# The CUDA kernels once more in the CPU emulator, built with AddressSanitizer and its runtime preloaded (so torch's
# CPU tensors carry red zones): an out-of-bounds access of any kernel fails here rather than on someone's GPU.
test-kernels-asan: build
	ASAN_OPTIONS=detect_leaks=0 BITLOGIC_EMULATOR_SANITIZE=1 LD_PRELOAD=$$(gcc -print-file-name=libasan.so) \
		$(PY) -m pytest -q -p no:cacheprovider tests/test_cuda_logic.py tests/test_cuda_lut.py \
		tests/test_cuda_binary.py tests/test_cuda_inference.py tests/test_cuda_launch.py tests/test_cuda_emulator.py \
		tests/test_cuda_candidates.py tests/test_cuda_tree_conv.py

# The fast loop: everything here also runs in make test.
CHECK_PYTEST := tests/test_api.py tests/test_format.py tests/test_golden.py tests/test_reference.py tests/test_engine_vs_reference.py \
	tests/test_nn_export.py tests/test_nn_conv.py tests/test_conv_reference.py
check: lint lint-imports
	cargo test -p bitlogic --profile test-release --locked
	$(PY) -m mypy
	$(PY) -m pytest -q -x $(CHECK_PYTEST)

test: lint test-rust test-aarch64 test-python test-kernels-asan

bench: build
	$(PY) benches/throughput.py
	$(PY) benches/train_step.py
	cargo bench -p bitlogic --locked

# Trains every preset on MNIST (about 40 minutes on 2 cores); prints the README's preset table.
bench-presets: build
	$(PY) benches/presets.py

# On a machine with a CUDA GPU: the kernel tests on the device (they skip elsewhere) and the GPU training-step bench.
gpu-check: build
	$(PY) -m pytest -q tests/test_cuda_compile.py tests/test_cuda_logic.py tests/test_cuda_lut.py tests/test_cuda_binary.py tests/test_cuda_inference.py \
		tests/test_cuda_tree_conv.py
	$(PY) benches/train_step.py --device cuda
	$(PY) benches/train_step.py --device cuda --dtype bfloat16
