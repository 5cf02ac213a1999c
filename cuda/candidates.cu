// The candidate mix of learned wiring: each of R choices (a gate input, a table input) reads the weighted sum of its
// K candidate wires, out[r, b] = sum_k w[r, k] * x[pool[r, k], b] (the math and the choice of kernels:
// python/bitlogic/ops/logic.py; the launches: python/bitlogic/gpu/candidates.py). Activations and gradients are
// feature-major ([rows, batch], contiguous over the batch), so a warp's threads read 32 consecutive samples of one
// wire; weights and sums are float32 for float32 and bfloat16 activations, float64 for float64 ones (those serve
// torch.autograd.gradcheck). The pool is int32 [R, K], indexed flat as p = r*K + k.
//
// Every sum runs in one fixed order (k increasing; the reverse index's order; a fixed lane split and shuffle tree),
// so results do not depend on scheduling: no atomics.
#include "bitlogic.cuh"

namespace bitlogic {

// grid (ceil(batch / blockDim.x), min(rows, 65535)); rows are strided over grid.y. Zero weights are skipped, so
// the one-hot weights of the hard and Gumbel estimators cost one read of x per output.
template <typename T, typename C = typename Compute<T>::type>
__device__ void candidate_forward(const T* x, const int* pool, const C* w, T* out, int rows, int k,
                                  long long batch) {
    long long b = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (b >= batch) return;
    for (int r = blockIdx.y; r < rows; r += gridDim.y) {
        const long long base = (long long)r * k;
        C acc = 0;
        for (int j = 0; j < k; ++j) {
            const C weight = w[base + j];
            if (weight != 0) acc += weight * (C)load(x, pool[base + j] * batch + b);
        }
        store(out, r * batch + b, acc);
    }
}

// grad_w[p] = sum_b grad[r, b] * x[pool[p], b] for every pair p = r*K + k: one warp per pair, the lanes striding
// over the batch, then a warp sum. The 8 warps of a block take 8 consecutive pairs, mostly of one row, so they read
// the same gradient row (from cache after the first). grid (blocks), block 256.
template <typename T, typename C = typename Compute<T>::type>
__device__ void candidate_backward_weights(const T* x, const int* pool, const T* grad, C* grad_w, long long pairs,
                                           int k, long long batch) {
    const int warps = blockDim.x >> 5;
    const int warp = threadIdx.x >> 5;
    // Every thread runs the same number of iterations, because warp_sum needs the whole block.
    for (long long base = (long long)blockIdx.x * warps; base < pairs; base += (long long)gridDim.x * warps) {
        const long long p = base + warp;
        const bool active = p < pairs;
        C s = 0;
        if (active) {
            const long long ox = pool[p] * batch, og = (p / k) * batch;
            for (long long b = lane(); b < batch; b += 32) s += (C)load(grad, og + b) * (C)load(x, ox + b);
        }
        s = warp_sum(s);
        if (active && lane() == 0) grad_w[p] = s;
    }
}

// grad_x[i, b] = sum of v[p] * grad[p / K, b] over the pairs p that read input i, listed in increasing p in
// readers[offsets[i] .. offsets[i + 1]] (the reverse index of the pool): each (input, sample) is one thread's sum,
// in that fixed order, so no atomics. Zero backward weights are skipped, as in the forward pass. grid
// (ceil(batch / blockDim.x), min(inputs, 65535)).
template <typename T, typename C = typename Compute<T>::type>
__device__ void candidate_backward_input(const C* v, const T* grad, const int* offsets, const int* readers,
                                         T* grad_x, int inputs, int k, long long batch) {
    long long b = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (b >= batch) return;
    for (int i = blockIdx.y; i < inputs; i += gridDim.y) {
        C acc = 0;
        for (int e = offsets[i]; e < offsets[i + 1]; ++e) {
            const int p = readers[e];
            const C weight = v[p];
            if (weight != 0) acc += weight * (C)load(grad, (long long)(p / k) * batch + b);
        }
        store(grad_x, (long long)i * batch + b, acc);
    }
}

}  // namespace bitlogic

#define BITLOGIC_CANDIDATE_KERNELS(suffix, T, C)                                                                  \
    extern "C" __global__ void candidate_forward_##suffix(const T* x, const int* pool, const C* w, T* out,         \
                                                          int rows, int k, long long batch) {                     \
        bitlogic::candidate_forward<T>(x, pool, w, out, rows, k, batch);                                          \
    }                                                                                                             \
    extern "C" __global__ void candidate_backward_weights_##suffix(const T* x, const int* pool, const T* grad,    \
                                                                   C* grad_w, long long pairs, int k,             \
                                                                   long long batch) {                             \
        bitlogic::candidate_backward_weights<T>(x, pool, grad, grad_w, pairs, k, batch);                          \
    }                                                                                                             \
    extern "C" __global__ void candidate_backward_input_##suffix(const C* v, const T* grad, const int* offsets,   \
                                                                 const int* readers, T* grad_x, int inputs,       \
                                                                 int k, long long batch) {                        \
        bitlogic::candidate_backward_input<T>(v, grad, offsets, readers, grad_x, inputs, k, batch);               \
    }

BITLOGIC_CANDIDATE_KERNELS(f32, float, float)
BITLOGIC_CANDIDATE_KERNELS(bf16, bitlogic::bf16, float)
BITLOGIC_CANDIDATE_KERNELS(f64, double, double)
