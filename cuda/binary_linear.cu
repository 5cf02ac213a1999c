// BinaryLinear as a bit-packed XNOR-popcount GEMM (the math and the choice of kernels: python/bitlogic/ops/binary.py;
// the launches: python/bitlogic/gpu/binary.py).
//
// The layer computes y = sign(2x - 1) @ sign(W).T with sign(v) = +1 where v >= 0, else -1. With input bits
// xb = (2x - 1 >= 0) and weight bits wb = (W >= 0), a product of two signs is +1 where the bits agree, so
// y[b, o] = in - 2 * popcount(xb[b] ^ wb[o]): an integer, computed exactly. Two steps:
//   1. pack: a float32/bfloat16 matrix [rows, cols] becomes uint32 words [rows, ceil(cols / 32)], bit k of word w
//      holding column 32w + k; the bits past the last column are 0;
//   2. gemm: y[b, o] = in - 2 * sum_w popc(xw[b, w] ^ ww[o, w]). The padding bits are 0 in both operands, so their
//      xor is 0 and they add nothing.
#include "bitlogic.cuh"

namespace bitlogic {

// A float32 value rounded to bfloat16 and widened back: what a bfloat16 tensor op stores.
__device__ __forceinline__ float round_bf16(float v) {
    const bf16 h = to_bf16(v);
    return load(&h, 0);
}

// The input bit: torch's 2 * x - 1 >= 0 with the arithmetic of the activation's dtype. For float32 the result is
// the sign of x - 0.5 whether or not the compiler fuses the two steps into one fma (2x is exact up to overflow to
// inf, and 2x - 1 is exact near the boundary); for bfloat16 torch rounds 2x and then 2x - 1 to bfloat16, and so
// does this. NaN compares false, as in torch.
__device__ __forceinline__ bool input_bit(float x) { return 2.f * x - 1.f >= 0.f; }
__device__ __forceinline__ bool input_bit(bf16 x) {
    const float v = load(&x, 0);
    return round_bf16(round_bf16(2.f * v) - 1.f) >= 0.f;
}
// The weight bit: W >= 0 (so -0 is +1 and NaN is -1, as torch's where(W >= 0, 1, -1)).
__device__ __forceinline__ bool weight_bit(float w) { return w >= 0.f; }
__device__ __forceinline__ bool weight_bit(bf16 w) { return load(&w, 0) >= 0.f; }

// One warp per output word: lane k reads column 32w + k (consecutive lanes read consecutive columns of a row-major
// matrix, which coalesces) and __ballot_sync gathers the 32 bits. Element (r, c) lies at r * row_stride + c *
// col_stride, so transposed views need no copy. grid (any), block 256; the warps stride over rows * words. Every
// thread of a block runs the same number of iterations, because the ballot needs the whole warp.
template <typename T, bool Weights>
__device__ void pack_bits(const T* m, unsigned int* words, long long rows, int cols, long long row_stride,
                          long long col_stride) {
    const int warps = blockDim.x >> 5;
    const int warp = threadIdx.x >> 5;
    const long long per_row = (cols + 31) / 32;
    const long long total = rows * per_row;
    for (long long base = (long long)blockIdx.x * warps; base < total; base += (long long)gridDim.x * warps) {
        const long long item = base + warp;
        const long long r = item / per_row;
        const long long c = (item - r * per_row) * 32 + lane();
        bool bit = false;
        if (item < total && c < cols) {
            const T v = m[r * row_stride + c * col_stride];
            bit = Weights ? weight_bit(v) : input_bit(v);
        }
        const unsigned int word = __ballot_sync(0xffffffffu, bit);
        if (item < total && lane() == 0) words[item] = word;
    }
}

// Tiling of the GEMM. A block of 256 threads (32 x 8) computes one 32 x 32 tile of y: 32 samples (rows of xw) by 32
// outputs (rows of ww). It walks the packed dimension in chunks of 32 words (1024 inputs): each thread copies four
// words of each operand into shared memory (lane k copies word k of a row, so a warp reads 128 consecutive bytes),
// the block synchronizes, and each thread then accumulates the four outputs (sample ty + 8i, output tx), i = 0..3,
// over the chunk from shared memory only. Every word staged is read by 32 threads, which is what makes staging pay.
// In the inner loop the lanes of a warp share ty, so the sample word is one broadcast, and they read 32 different
// rows of the weight tile at one column: the row pitch of 33 words puts those in 32 different banks. Words past the
// last sample, output or word load as 0: a zero word adds nothing to real outputs, and outputs past the edge are
// never stored. Consecutive lanes store consecutive outputs of a row of y, which coalesces.
// grid (ceil(out / 32), min(ceil(batch / 32), 65535)); sample tiles stride over grid.y.
constexpr int TILE = 32;
constexpr int ROWS_PER_PASS = 8;  // blockDim.y: each thread covers TILE / ROWS_PER_PASS samples

template <typename T>
__device__ void xnor_gemm(const unsigned int* xw, const unsigned int* ww, T* y, long long batch, int outs,
                          int words, int in_features) {
    __shared__ unsigned int xs[TILE][TILE + 1];
    __shared__ unsigned int ws[TILE][TILE + 1];
    const int tx = threadIdx.x, ty = threadIdx.y;
    const long long o0 = (long long)blockIdx.x * TILE;
    const long long sample_tiles = (batch + TILE - 1) / TILE;
    for (long long tile = blockIdx.y; tile < sample_tiles; tile += gridDim.y) {
        const long long b0 = tile * TILE;
        int acc[TILE / ROWS_PER_PASS] = {};
        for (int k0 = 0; k0 < words; k0 += TILE) {
            const int k = k0 + tx;
            for (int i = 0; i < TILE / ROWS_PER_PASS; ++i) {
                const int r = ty + ROWS_PER_PASS * i;
                xs[r][tx] = (b0 + r < batch && k < words) ? xw[(b0 + r) * words + k] : 0u;
                ws[r][tx] = (o0 + r < outs && k < words) ? ww[(o0 + r) * words + k] : 0u;
            }
            __syncthreads();
            for (int j = 0; j < TILE; ++j) {
                const unsigned int w = ws[tx][j];
                for (int i = 0; i < TILE / ROWS_PER_PASS; ++i) acc[i] += __popc(xs[ty + ROWS_PER_PASS * i][j] ^ w);
            }
            __syncthreads();  // the next chunk overwrites the tiles
        }
        const long long o = o0 + tx;
        for (int i = 0; i < TILE / ROWS_PER_PASS; ++i) {
            const long long b = b0 + ty + ROWS_PER_PASS * i;
            if (b < batch && o < outs) store(y, b * outs + o, (float)(in_features - 2 * acc[i]));
        }
    }
}

}  // namespace bitlogic

#define BITLOGIC_BINARY_KERNELS(suffix, T)                                                                        \
    extern "C" __global__ void binary_pack_input_##suffix(const T* x, unsigned int* words, long long rows,       \
                                                          int cols, long long row_stride, long long col_stride) { \
        bitlogic::pack_bits<T, false>(x, words, rows, cols, row_stride, col_stride);                             \
    }                                                                                                             \
    extern "C" __global__ void binary_pack_weight_##suffix(const T* w, unsigned int* words, long long rows,      \
                                                           int cols, long long row_stride,                       \
                                                           long long col_stride) {                                \
        bitlogic::pack_bits<T, true>(w, words, rows, cols, row_stride, col_stride);                              \
    }                                                                                                             \
    extern "C" __global__ void binary_gemm_##suffix(const unsigned int* xw, const unsigned int* ww, T* y,        \
                                                    long long batch, int outs, int words, int in_features) {     \
        bitlogic::xnor_gemm<T>(xw, ww, y, batch, outs, words, in_features);                                       \
    }

BITLOGIC_BINARY_KERNELS(f32, float)
BITLOGIC_BINARY_KERNELS(bf16, bitlogic::bf16)
