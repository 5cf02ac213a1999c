// Tree convolutions (LogicConv2d): forward and backward kernels (the math: docs of bitlogic.ops.conv.tree_conv;
// the launches: python/bitlogic/gpu/tree_conv.py).
//
// x is [B, C, H, W], y [B, O, H', W'], both contiguous. Output channel o is a tree of L - 1 two-input gates over
// L = 2^depth leaves, the same at every position: leaf j reads input (c, dy, dx) of the receptive field, that is
// x[b, c, y'*sh - ph + dy, x'*sw - pw + dx], 0 where that falls in the padding. With nodes[0 .. L) the leaves,
// gate g computes c0 + c1*a + (c2 + c3*a)*b of a = nodes[2g], b = nodes[2g + 1] into nodes[L + g]; the output is
// the last node. Leaves are int32 [O, L, 3] (c, dy, dx), checked in range by the launcher; coefficients [O, L-1, 4]
// and every sum are float32 for float32 and bfloat16 activations, float64 for float64 ones (for gradcheck).
//
// A thread evaluates a whole tree at one position. Depths 1..3 (the usual ones) have kernels of their own, behind one
// switch, whose loops unroll so that the nodes live in registers; deeper trees share one instance for up to 256
// leaves, looping over nodes in local memory (instances per depth there cost NVRTC seconds each and gain little).
//
// Backward recomputes the trees from x (nothing but x is kept from the forward pass) and skips positions whose
// output gradient is 0 (behind an OR pool, 3 of 4). No atomics, every sum in a fixed order:
// - tree_conv_backward: grid (chunks, O); the block of (chunk, o) takes positions p = chunk*blockDim + t, then
//   strided by chunks*blockDim, and writes the leaves' gradients of every position it takes to leaf_grad
//   [B, O, L, H'*W'] (0 for skipped positions) and its coefficient-gradient sums to partial [O, chunks, L-1, 4]
//   (each thread's positions in order, then a fixed warp-shuffle tree and the warps in order);
// - tree_conv_reduce_coef: grad_coef[o, k] = sum over the chunks in order of partial[o, chunk, k];
// - tree_conv_backward_input: one thread per input element (b, c, y, x) gathers the leaf gradients of every leaf
//   reading channel c (listed in increasing o*L + j by the reverse index offsets [C + 1], readers [O*L]) at the
//   one position whose window puts that leaf on (y, x), if any.
#include "bitlogic.cuh"

namespace bitlogic {

// The shape of one convolution (the kernels take its fields as separate arguments: BITLOGIC_TREE_SHAPE below).
struct TreeConvShape {
    int channels, height, width;   // C, H, W of x
    int stride_y, stride_x, pad_y, pad_x;
    int out_height, out_width;     // H', W'
    int out_channels;              // O
    long long batch;
};

// The instances: M is the most leaves a tree may have (the node arrays' size), L the leaves it has, equal to M for
// the unrolled depths. A loop over a tree is unrolled fully for those, not at all for the shared instance.
constexpr int kUnrolledLeaves = 8;
constexpr int kMaxLeaves = 256;
template <int M>
__device__ constexpr int unrolled() {
    return M <= kUnrolledLeaves ? M : 1;
}

// The L leaf values of channel o's tree at output position q = y'*W' + x' of sample b, into v[0 .. L).
template <int M, typename T, typename C>
__device__ __forceinline__ void load_leaves(const T* x, const int* leaves, const TreeConvShape& s, int L, int o,
                                            long long b, long long q, C* v) {
    const int oy = (int)(q / s.out_width), ox = (int)(q % s.out_width);
    const int y0 = oy * s.stride_y - s.pad_y, x0 = ox * s.stride_x - s.pad_x;
    const long long plane = (long long)s.height * s.width;
    const T* xb = x + b * s.channels * plane;
    const int* leaf = leaves + 3LL * L * o;
#pragma unroll(unrolled<M>())
    for (int j = 0; j < L; ++j) {
        const int iy = y0 + leaf[3 * j + 1], ix = x0 + leaf[3 * j + 2];
        const bool inside = iy >= 0 && iy < s.height && ix >= 0 && ix < s.width;
        v[j] = inside ? (C)load(xb, leaf[3 * j] * plane + (long long)iy * s.width + ix) : (C)0;
    }
}

// The tree's nodes: n[0 .. L) the leaves on entry, n[L .. 2L - 1) the gates' outputs on return.
template <int M, typename C>
__device__ __forceinline__ void evaluate(const C* coef, int L, C* n) {
#pragma unroll(unrolled<M>())
    for (int g = 0; g < L - 1; ++g) {
        const C* c = coef + 4 * g;
        const C a = n[2 * g], v = n[2 * g + 1];
        n[L + g] = c[0] + c[1] * a + (c[2] + c[3] * a) * v;
    }
}

// grid (ceil(B*H'*W' / blockDim.x), min(O, 65535)); channels are strided over grid.y.
template <int M, typename T, typename C>
__device__ void tree_forward(const T* x, const int* leaves, const C* coef, T* y, const TreeConvShape& s, int L) {
    const long long positions = (long long)s.out_height * s.out_width;
    const long long p = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (p >= s.batch * positions) return;
    const long long b = p / positions, q = p % positions;
    for (int o = blockIdx.y; o < s.out_channels; o += gridDim.y) {
        C n[2 * M - 1];
        load_leaves<M>(x, leaves, s, L, o, b, q, n);
        evaluate<M>(coef + 4LL * (L - 1) * o, L, n);
        store(y, (b * s.out_channels + o) * positions + q, n[2 * L - 2]);
    }
}

// The block's coefficient-gradient sums acc[0 .. K) (one set per thread) into out[0 .. K): per group of 32 values
// each warp sums one value per lane, then threads 0..31 add the warps' sums in warp order. Every thread calls it.
template <typename C>
__device__ __forceinline__ C (*warp_sums_buffer())[32] {
    // Declared here, templated on C alone, so the eight depths' instantiations of a kernel share one buffer.
    __shared__ C buffer[32][32];
    return buffer;
}

template <typename C>
__device__ void block_sums(const C* acc, int K, C* out) {
    C (*warp_sums)[32] = warp_sums_buffer<C>();
    const int warp = threadIdx.x >> 5, warps = blockDim.x >> 5;
    // Not unrolled: unrolled, 1020 coefficients' warp sums cost NVRTC most of a minute.
#pragma unroll 1
    for (int k0 = 0; k0 < K; k0 += 32) {
        C mine = 0;
#pragma unroll
        for (int i = 0; i < 32; ++i) {
            if (k0 + i < K) {  // the same for every thread: the shuffles stay block-uniform
                const C total = warp_sum(acc[k0 + i]);
                if ((int)lane() == i) mine = total;
            }
        }
        warp_sums[warp][lane()] = mine;
        __syncthreads();
        if ((int)threadIdx.x < 32 && k0 + (int)threadIdx.x < K) {
            C total = 0;
            for (int w = 0; w < warps; ++w) total += warp_sums[w][threadIdx.x];
            out[k0 + threadIdx.x] = total;
        }
        __syncthreads();
    }
}

// grid (chunks, min(O, 65535)), blockDim.x a multiple of 32 (at most 1024). leaf_grad may be null (x needs no
// gradient), partial too (the coefficients need none).
template <int M, typename T, typename C>
__device__ void tree_backward(const T* x, const int* leaves, const C* coef, const T* grad, C* leaf_grad, C* partial,
                              const TreeConvShape& s, int L) {
    const int K = 4 * (L - 1);
    const long long positions = (long long)s.out_height * s.out_width;
    const long long total = s.batch * positions;
    const long long step = (long long)gridDim.x * blockDim.x;
    for (int o = blockIdx.y; o < s.out_channels; o += gridDim.y) {
        const C* co = coef + (long long)K * o;
        C acc[4 * (M - 1)];
#pragma unroll(unrolled<M>())
        for (int k = 0; k < K; ++k) acc[k] = 0;
        for (long long p = (long long)blockIdx.x * blockDim.x + threadIdx.x; p < total; p += step) {
            const long long b = p / positions, q = p % positions;
            C* lg = leaf_grad ? leaf_grad + ((b * s.out_channels + o) * L) * positions + q : nullptr;
            const C g = load(grad, (b * s.out_channels + o) * positions + q);
            if (g == 0) {
                if (lg) {
#pragma unroll(unrolled<M>())
                    for (int j = 0; j < L; ++j) lg[j * positions] = 0;
                }
                continue;
            }
            C n[2 * M - 1];
            load_leaves<M>(x, leaves, s, L, o, b, q, n);
            evaluate<M>(co, L, n);
            // Gates in decreasing order: a gate's output feeds a later gate only, which has already put the
            // gradient of that output where its value was, n[L + gate]; the gate puts its inputs' gradients in their
            // places in turn, so the leaves' gradients end in n[0 .. L).
            n[2 * L - 2] = g;
#pragma unroll(unrolled<M>())
            for (int gate = L - 2; gate >= 0; --gate) {
                const C* c = co + 4 * gate;
                const C d = n[L + gate], a = n[2 * gate], v = n[2 * gate + 1];
                acc[4 * gate] += d;
                acc[4 * gate + 1] += d * a;
                acc[4 * gate + 2] += d * v;
                acc[4 * gate + 3] += d * a * v;
                n[2 * gate] = d * (c[1] + c[3] * v);
                n[2 * gate + 1] = d * (c[2] + c[3] * a);
            }
            if (lg) {
#pragma unroll(unrolled<M>())
                for (int j = 0; j < L; ++j) lg[j * positions] = n[j];
            }
        }
        if (partial) block_sums(acc, K, partial + ((long long)o * gridDim.x + blockIdx.x) * K);
    }
}

// grid (ceil(O*K / blockDim.x)); one thread per coefficient, summing its chunks in order.
template <typename C>
__device__ void tree_reduce_coef(const C* partial, C* grad_coef, long long count, int chunks, int k) {
    const long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= count) return;
    const long long o = i / k, e = i % k;
    const C* row = partial + o * chunks * k + e;
    C total = 0;
    for (int c = 0; c < chunks; ++c) total += row[(long long)c * k];
    grad_coef[i] = total;
}

// grid (min(ceil(B*C*H*W / blockDim.x), cap)); threads stride over the input elements.
template <typename T, typename C>
__device__ void tree_backward_input(const int* leaves, const C* leaf_grad, const int* offsets, const int* readers,
                                    T* grad_x, const TreeConvShape& s, int tree_leaves) {
    const long long plane = (long long)s.height * s.width;
    const long long positions = (long long)s.out_height * s.out_width;
    const long long count = s.batch * s.channels * plane;
    const long long per_sample = (long long)s.out_channels * tree_leaves;  // leaf-gradient rows of one sample
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < count;
         i += (long long)gridDim.x * blockDim.x) {
        const int ix = (int)(i % s.width), iy = (int)((i / s.width) % s.height);
        const int c = (int)((i / plane) % s.channels);
        const long long b = i / (plane * s.channels);
        C acc = 0;
        for (int e = offsets[c]; e < offsets[c + 1]; ++e) {
            const int r = readers[e];  // o*L + j
            // The output position whose leaf r lands on (iy, ix): y'*sh - ph + dy = iy, if a whole y' in range.
            const int ty = iy + s.pad_y - leaves[3 * r + 1], tx = ix + s.pad_x - leaves[3 * r + 2];
            if (ty < 0 || tx < 0 || ty % s.stride_y || tx % s.stride_x) continue;
            const int oy = ty / s.stride_y, ox = tx / s.stride_x;
            if (oy >= s.out_height || ox >= s.out_width) continue;
            acc += leaf_grad[(b * per_sample + r) * positions + (long long)oy * s.out_width + ox];
        }
        store(grad_x, i, acc);
    }
}

}  // namespace bitlogic

// One switch over the depth per kernel: call(M, L) runs the instance for trees of at most M leaves on L leaves.
#define BITLOGIC_TREE_DEPTHS(call)                                      \
    switch (depth) {                                                    \
        case 1: call(2, 2); break;                                      \
        case 2: call(4, 4); break;                                      \
        case 3: call(8, 8); break;                                      \
        default: call(bitlogic::kMaxLeaves, 1 << depth); break;         \
    }

// The kernels' shape arguments, and the TreeConvShape s made of them.
#define BITLOGIC_TREE_SHAPE_PARAMS                                                                                \
    int channels, int height, int width, int stride_y, int stride_x, int pad_y, int pad_x, int out_height,        \
        int out_width, int out_channels, long long batch
#define BITLOGIC_TREE_SHAPE                                                                                       \
    const bitlogic::TreeConvShape s = {channels, height,    width,      stride_y,     stride_x, pad_y,            \
                                       pad_x,    out_height, out_width, out_channels, batch}

#define BITLOGIC_TREE_FORWARD(M, L) bitlogic::tree_forward<M, T, C>(x, leaves, coef, y, s, L)
#define BITLOGIC_TREE_BACKWARD(M, L) \
    bitlogic::tree_backward<M, T, C>(x, leaves, coef, grad, leaf_grad, partial, s, L)

#define BITLOGIC_TREE_CONV_KERNELS(suffix, TYPE, COMPUTE)                                                         \
    extern "C" __global__ void tree_conv_forward_##suffix(const TYPE* x, const int* leaves, const COMPUTE* coef,  \
                                                          TYPE* y, BITLOGIC_TREE_SHAPE_PARAMS, int depth) {       \
        typedef TYPE T;                                                                                           \
        typedef COMPUTE C;                                                                                        \
        BITLOGIC_TREE_SHAPE;                                                                                      \
        BITLOGIC_TREE_DEPTHS(BITLOGIC_TREE_FORWARD)                                                               \
    }                                                                                                             \
    extern "C" __global__ void tree_conv_backward_##suffix(const TYPE* x, const int* leaves, const COMPUTE* coef, \
                                                           const TYPE* grad, COMPUTE* leaf_grad,                  \
                                                           COMPUTE* partial, BITLOGIC_TREE_SHAPE_PARAMS,          \
                                                           int depth) {                                           \
        typedef TYPE T;                                                                                           \
        typedef COMPUTE C;                                                                                        \
        BITLOGIC_TREE_SHAPE;                                                                                      \
        BITLOGIC_TREE_DEPTHS(BITLOGIC_TREE_BACKWARD)                                                              \
    }                                                                                                             \
    extern "C" __global__ void tree_conv_backward_input_##suffix(                                                 \
        const int* leaves, const COMPUTE* leaf_grad, const int* offsets, const int* readers, TYPE* grad_x,        \
        BITLOGIC_TREE_SHAPE_PARAMS, int tree_leaves) {                                                            \
        BITLOGIC_TREE_SHAPE;                                                                                      \
        bitlogic::tree_backward_input<TYPE, COMPUTE>(leaves, leaf_grad, offsets, readers, grad_x, s,              \
                                                     tree_leaves);                                                \
    }

BITLOGIC_TREE_CONV_KERNELS(f32, float, float)
BITLOGIC_TREE_CONV_KERNELS(bf16, bitlogic::bf16, float)
BITLOGIC_TREE_CONV_KERNELS(f64, double, double)

extern "C" __global__ void tree_conv_reduce_coef_f32(const float* partial, float* grad_coef, long long count,
                                                     int chunks, int k) {
    bitlogic::tree_reduce_coef<float>(partial, grad_coef, count, chunks, k);
}
extern "C" __global__ void tree_conv_reduce_coef_f64(const double* partial, double* grad_coef, long long count,
                                                     int chunks, int k) {
    bitlogic::tree_reduce_coef<double>(partial, grad_coef, count, chunks, k);
}
