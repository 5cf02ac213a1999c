"""The CPU emulator the kernel tests rely on: barriers order shared-memory phases, warp exchanges and ballots see
the right lanes, and a block that diverges at a barrier is reported instead of hanging."""

from __future__ import annotations

import ctypes
from pathlib import Path

import pytest
import torch

from cuda_emulator import Emulator, available

pytestmark = pytest.mark.skipif(not available(), reason="the CPU emulator of the CUDA kernels needs g++")

PROBES = r'''
#include "bitlogic.cuh"
// Block-wide reversal through shared memory: wrong without the barrier between the write and the read.
extern "C" __global__ void reverse(const float* in, float* out) {
    __shared__ float buffer[64];
    const unsigned int t = threadIdx.x, base = blockIdx.x * blockDim.x;
    buffer[t] = in[base + t];
    __syncthreads();
    out[base + t] = buffer[blockDim.x - 1 - t];
}
// Each lane: the sum of its warp, its xor-1 partner's value, and the ballot of odd values.
extern "C" __global__ void warp_ops(const float* in, float* sums, float* partners, unsigned int* ballots) {
    const unsigned int i = blockIdx.x * blockDim.x + threadIdx.x;
    const float v = in[i];
    sums[i] = bitlogic::warp_sum(v);
    partners[i] = __shfl_xor_sync(0xffffffffu, v, 1);
    ballots[i] = __ballot_sync(0xffffffffu, ((int)v) & 1);
}
// Thread 0 leaves before the barrier the others wait at.
extern "C" __global__ void diverge(float* out) {
    if (threadIdx.x == 0) return;
    __syncthreads();
    out[threadIdx.x] = 1.0f;
}
'''


@pytest.fixture(scope="module")
def emulator(tmp_path_factory: pytest.TempPathFactory) -> Emulator:
    sources = Path(tmp_path_factory.mktemp("probe-sources"))
    (sources / "probes.cu").write_text(PROBES)
    return Emulator(Path(tmp_path_factory.mktemp("probe-build")), sources)


def _ptr(t: torch.Tensor) -> ctypes.c_void_p:
    return ctypes.c_void_p(t.data_ptr())


def test_barriers_separate_shared_memory_phases(emulator: Emulator) -> None:
    x = torch.arange(128, dtype=torch.float32)
    out = torch.zeros(128)
    emulator.launch("probes.cu", "reverse", (2, 1, 1), (64, 1, 1), [_ptr(x), _ptr(out)])
    assert torch.equal(out, torch.cat([x[:64].flip(0), x[64:].flip(0)]))


def test_warp_exchanges_stay_within_their_warp(emulator: Emulator) -> None:
    x = torch.arange(128, dtype=torch.float32)
    sums, partners = torch.zeros(128), torch.zeros(128)
    ballots = torch.zeros(128, dtype=torch.int32)
    emulator.launch("probes.cu", "warp_ops", (2, 1, 1), (64, 1, 1),
                    [_ptr(x), _ptr(sums), _ptr(partners), _ptr(ballots)])
    assert torch.equal(sums, x.view(4, 32).sum(1).repeat_interleave(32))
    assert torch.equal(partners, x.view(-1, 2).flip(1).reshape(-1))
    assert (ballots.view(torch.int32).to(torch.int64) & 0xFFFFFFFF).unique().tolist() == [0xAAAAAAAA]


def test_a_diverged_block_is_reported(emulator: Emulator) -> None:
    out = torch.zeros(64)
    with pytest.raises(RuntimeError, match="diverged at a barrier"):
        emulator.launch("probes.cu", "diverge", (1, 1, 1), (64, 1, 1), [_ptr(out)])
