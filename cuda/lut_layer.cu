// LUTLayer: n-input lookup tables trained with the Extended Finite Difference (the math and the choice of kernels:
// python/bitlogic/ops/lut.py; the launches: python/bitlogic/gpu/lut.py). The learnable mapping's selection stays in
// torch (its backward is two matrix products, cuBLAS's job); these kernels take the selected inputs `selected`
// [batch, L*n] as torch produces them, sample-major: the n inputs of table l of sample b are
// selected[b, l*n .. l*n + n), input j the bit j of the table's address.
//
// Thread mapping: item i = b*L + l (table fastest) for the forward pass and the table gradient, element
// i = b*L*n + l*n + j for the input gradient. In the forward pass a warp's 32 threads read the 32*n consecutive
// values of 32 consecutive tables with n strided loads; the first pulls those cache lines into L1 and the other n-1
// hit it, so DRAM sees one pass over `selected`, and every store (outputs, addresses, input gradients) is one
// contiguous run per warp. Tables are float32 [L, 2**n]; activations and gradients float32 or bfloat16, with float32
// arithmetic. Every kernel strides over its items with the whole grid, so a capped grid covers any batch.
#include "bitlogic.cuh"

namespace bitlogic {

// torch's clamp(v, -1, 1): a NaN stays NaN (both comparisons are false).
__device__ __forceinline__ float clamp_unit(float v) { return v < -1.f ? -1.f : (v > 1.f ? 1.f : v); }

// out[b, l] = tables[l, a] > 0 (ste) or (clamp(tables[l, a], -1, 1) + 1) * 0.5, with a = sum_j (x_j > 0.5) << j;
// address[b, l] = a, kept for the backward pass.
template <typename T, typename O>
__device__ void lut_forward(const T* selected, const float* tables, O* out, int* address, int width, int n,
                            long long batch, int ste) {
    const long long items = batch * width;
    const long long size = 1LL << n;
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < items;
         i += (long long)gridDim.x * blockDim.x) {
        const T* x = selected + i * n;  // i = b*L + l, so the inputs of item i start at b*L*n + l*n = i*n
        int a = 0;
        for (int j = 0; j < n; ++j) a |= (load(x, j) > 0.5f ? 1 : 0) << j;
        const long long l = i % width;
        const float v = tables[l * size + a];
        store(out, i, ste ? (v > 0.f ? 1.f : 0.f) : (clamp_unit(v) + 1.f) * 0.5f);
        address[i] = a;
    }
}

// grad_tables[l, address[b, l]] += grad[b, l] (float32, zeroed by the caller). Threads of a warp handle consecutive
// tables, so their atomics go to different tables; contention is only between samples of one table.
template <typename G>
__device__ void lut_backward_tables(const G* grad, const int* address, float* grad_tables, int width, int n,
                                    long long batch) {
    const long long items = batch * width;
    const long long size = 1LL << n;
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < items;
         i += (long long)gridDim.x * blockDim.x) {
        atomicAdd(grad_tables + (i % width) * size + address[i], load(grad, i));
    }
}

// grad_selected[b, l*n + j] = grad[b, l] * per_address[l, address[b, l], j], per_address the [L, 2**n, n] EFD
// gradients of every (table, address) pair. One thread per element, so the stores coalesce; the n threads of one
// table read the same grad and address (one load for the warp) and n neighbouring per_address entries.
template <typename G, typename T>
__device__ void lut_backward_input(const G* grad, const int* address, const float* per_address, T* grad_selected,
                                   int width, int n, long long batch) {
    const long long elements = batch * width * n;
    const long long size = 1LL << n;
    for (long long e = (long long)blockIdx.x * blockDim.x + threadIdx.x; e < elements;
         e += (long long)gridDim.x * blockDim.x) {
        const long long i = e / n;  // the item b*L + l
        const long long j = e - i * n;
        const long long l = i % width;
        store(grad_selected, e, load(grad, i) * per_address[((l * size) + address[i]) * n + j]);
    }
}

}  // namespace bitlogic

// Suffixes name the activation types: forward <selected>_<out> (the soft outputs of ste=False are float32 like the
// tables, also for bfloat16 inputs), backward input <grad>_<selected>, backward tables <grad>.
#define BITLOGIC_LUT_FORWARD(suffix, T, O)                                                                        \
    extern "C" __global__ void lut_forward_##suffix(const T* selected, const float* tables, O* out, int* address, \
                                                    int width, int n, long long batch, int ste) {                 \
        bitlogic::lut_forward<T, O>(selected, tables, out, address, width, n, batch, ste);                        \
    }

#define BITLOGIC_LUT_BACKWARD_INPUT(suffix, G, T)                                                                 \
    extern "C" __global__ void lut_backward_input_##suffix(const G* grad, const int* address,                    \
                                                           const float* per_address, T* grad_selected, int width, \
                                                           int n, long long batch) {                              \
        bitlogic::lut_backward_input<G, T>(grad, address, per_address, grad_selected, width, n, batch);          \
    }

#define BITLOGIC_LUT_BACKWARD_TABLES(suffix, G)                                                                   \
    extern "C" __global__ void lut_backward_tables_##suffix(const G* grad, const int* address, float* grad_tables, \
                                                            int width, int n, long long batch) {                  \
        bitlogic::lut_backward_tables<G>(grad, address, grad_tables, width, n, batch);                            \
    }

BITLOGIC_LUT_FORWARD(f32_f32, float, float)
BITLOGIC_LUT_FORWARD(bf16_bf16, bitlogic::bf16, bitlogic::bf16)
BITLOGIC_LUT_FORWARD(bf16_f32, bitlogic::bf16, float)
BITLOGIC_LUT_BACKWARD_INPUT(f32_f32, float, float)
BITLOGIC_LUT_BACKWARD_INPUT(bf16_bf16, bitlogic::bf16, bitlogic::bf16)
BITLOGIC_LUT_BACKWARD_INPUT(f32_bf16, float, bitlogic::bf16)
BITLOGIC_LUT_BACKWARD_TABLES(f32, float)
BITLOGIC_LUT_BACKWARD_TABLES(bf16, bitlogic::bf16)
