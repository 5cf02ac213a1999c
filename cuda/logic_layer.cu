// LogicLayer: a layer of relaxed two-input gates out = c0 + c1*a + c2*b + c3*a*b (the math and the choice of kernels:
// python/bitlogic/ops/logic.py; the launches: python/bitlogic/gpu/logic.py).
// Both parametrizations reduce a gate to its four coefficients before the batch is touched (autograd differentiates
// that small step), so these kernels serve both. Coefficients and sums are float32 for float32 and bfloat16
// activations, float64 for float64 ones (those serve torch.autograd.gradcheck). Activations are feature-major
// ([features, batch], contiguous over the batch): the threads of a warp read 32 consecutive samples of one wire,
// which coalesces.
#include "bitlogic.cuh"

namespace bitlogic {

// grid (ceil(batch / blockDim.x), min(gates, 65535)); gates are strided over grid.y.
template <typename T, typename C = typename Compute<T>::type>
__device__ void logic_forward(const T* x, const int* ia, const int* ib, const C* coef, T* out, int gates,
                              long long batch) {
    long long b = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (b >= batch) return;
    for (int n = blockIdx.y; n < gates; n += gridDim.y) {
        const C* c = coef + 4LL * n;
        C a = load(x, ia[n] * batch + b);
        C v = load(x, ib[n] * batch + b);
        store(out, n * batch + b, c[0] + c[1] * a + (c[2] + c[3] * a) * v);
    }
}

// The coefficient gradient is four batch sums per gate: sum g, sum a*g, sum b*g, sum a*b*g. One warp per gate, the
// lanes striding over the batch; grid (blocks), block 256 (8 gates per block and step).
template <typename T, typename C = typename Compute<T>::type>
__device__ void logic_backward_coef(const T* x, const int* ia, const int* ib, const T* grad, C* grad_coef,
                                    int gates, long long batch) {
    const int warps = blockDim.x >> 5;
    const int warp = threadIdx.x >> 5;
    // Every thread runs the same number of iterations, because warp_sum needs the whole block.
    for (long long base = (long long)blockIdx.x * warps; base < gates; base += (long long)gridDim.x * warps) {
        long long n = base + warp;
        bool active = n < gates;
        C s0 = 0, s1 = 0, s2 = 0, s3 = 0;
        if (active) {
            const long long oa = ia[n] * batch, ob = ib[n] * batch, og = n * batch;
            for (long long b = lane(); b < batch; b += 32) {
                C g = load(grad, og + b), a = load(x, oa + b), v = load(x, ob + b);
                s0 += g;
                s1 += a * g;
                s2 += v * g;
                s3 += a * v * g;
            }
        }
        s0 = warp_sum(s0);
        s1 = warp_sum(s1);
        s2 = warp_sum(s2);
        s3 = warp_sum(s3);
        if (active && lane() == 0) {
            grad_coef[4 * n] = s0;
            grad_coef[4 * n + 1] = s1;
            grad_coef[4 * n + 2] = s2;
            grad_coef[4 * n + 3] = s3;
        }
    }
}

// The input gradient without atomics: input i lists the gates that read it in readers[offsets[i] ..
// offsets[i + 1]], each entry 2 * gate + role (role 0: the gate reads i as a, 1: as b). A gate whose two wires are
// the same input appears twice, once per role, so its gradient is d/dx (c0 + (c1 + c2) x + c3 x^2) as it must be.
// grid (ceil(batch / blockDim.x), min(inputs, 65535)).
template <typename T, typename C = typename Compute<T>::type>
__device__ void logic_backward_input(const T* x, const int* ia, const int* ib, const C* coef, const T* grad,
                                     const int* offsets, const int* readers, T* grad_x, int inputs,
                                     long long batch) {
    long long b = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (b >= batch) return;
    for (int i = blockIdx.y; i < inputs; i += gridDim.y) {
        C acc = 0;
        for (int e = offsets[i]; e < offsets[i + 1]; ++e) {
            const int r = readers[e];
            const long long n = r >> 1;
            const C* c = coef + 4 * n;
            const C g = load(grad, n * batch + b);
            if (r & 1) {
                acc += g * (c[2] + c[3] * load(x, ia[n] * batch + b));
            } else {
                acc += g * (c[1] + c[3] * load(x, ib[n] * batch + b));
            }
        }
        store(grad_x, i * batch + b, acc);
    }
}

}  // namespace bitlogic

#define BITLOGIC_LOGIC_KERNELS(suffix, T, C)                                                                      \
    extern "C" __global__ void logic_forward_##suffix(const T* x, const int* ia, const int* ib, const C* coef,     \
                                                      T* out, int gates, long long batch) {                      \
        bitlogic::logic_forward<T>(x, ia, ib, coef, out, gates, batch);                                           \
    }                                                                                                             \
    extern "C" __global__ void logic_backward_coef_##suffix(const T* x, const int* ia, const int* ib,             \
                                                            const T* grad, C* grad_coef, int gates,               \
                                                            long long batch) {                                    \
        bitlogic::logic_backward_coef<T>(x, ia, ib, grad, grad_coef, gates, batch);                               \
    }                                                                                                             \
    extern "C" __global__ void logic_backward_input_##suffix(                                                     \
        const T* x, const int* ia, const int* ib, const C* coef, const T* grad, const int* offsets,               \
        const int* readers, T* grad_x, int inputs, long long batch) {                                             \
        bitlogic::logic_backward_input<T>(x, ia, ib, coef, grad, offsets, readers, grad_x, inputs, batch);        \
    }

BITLOGIC_LOGIC_KERNELS(f32, float, float)
BITLOGIC_LOGIC_KERNELS(bf16, bitlogic::bf16, float)
BITLOGIC_LOGIC_KERNELS(f64, double, double)
