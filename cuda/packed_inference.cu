// Bit-sliced inference of a compiled network (python/bitlogic/gpu/inference.py), bit-exact with the CPU engine and
// with python/bitlogic/reference.py.
//
// Bits travel as bit planes: a group of `width` bits over N samples is uint32 [width, words], words = ceil(N / 32),
// where bit s of word w of plane j is bit j of sample 32w + s. Gate and LUT layers then work on whole words (32
// samples per operation) and their threads read 32 consecutive words of one plane, which coalesces. The binary
// layer and the head need all bits of one sample instead, so they read sample rows: uint32 [32 * words, row_words],
// row_words = ceil(width / 32), bit b of word k of row s being bit 32k + b of sample s (bits past `width` are 0).
// planes_to_rows makes them, 32x32 bits per warp.
//
// Every word of every plane is written, including the samples past N in the last word (they are pack's zeros run
// through the layers), so no kernel ever reads an unwritten word; the head reads only the first N rows.
//
// Kernels that exchange values between lanes (ballot, shuffle) loop over warp-sized units with the whole grid, every
// thread of a block running the same number of iterations (a warp past the end runs them inactive): the exchanges
// need all 32 lanes, and the CPU emulator of the tests needs every thread of the block. The others stride over
// items with the whole grid. Either way a capped grid covers any size.
#include "bitlogic.cuh"

namespace bitlogic {

// All ones where bit k of v is 1, else all zeros.
__device__ __forceinline__ unsigned int spread(unsigned int v, int k) { return 0u - ((v >> k) & 1u); }

// Input bits, bytes [num_bits, n] (0 or 1: a torch bool tensor, bit-major so that a warp reads 32 consecutive
// bytes) into planes [num_bits, words]. Unit u = b * words + w is word w of plane b, so the store goes to planes[u].
__device__ void pack_planes(const unsigned char* bits, unsigned int* planes, int num_bits, long long n,
                            long long words) {
    const long long per_block = blockDim.x >> 5;
    const long long units = (long long)num_bits * words;
    for (long long base = (long long)blockIdx.x * per_block; base < units; base += (long long)gridDim.x * per_block) {
        const long long u = base + (threadIdx.x >> 5);
        const bool active = u < units;
        bool bit = false;
        if (active) {
            const long long b = u / words;
            const long long s = (u - b * words) * 32 + lane();
            bit = s < n && bits[b * n + s] != 0;  // samples past n are 0
        }
        const unsigned int word = __ballot_sync(0xffffffffu, bit);
        if (active && lane() == 0) planes[u] = word;
    }
}

// Two-input gates, one thread per (gate, word), item i = g * words + w. The output for (a, b) is bit 3 - (2a + b)
// of the op code (FORMAT.md 3.3), so the word is the OR of the four minterms, each kept where its op bit is set.
__device__ void gate_planes(const unsigned int* in, const int* wires, const unsigned char* ops, unsigned int* out,
                            int gates, long long words) {
    const long long items = (long long)gates * words;
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < items;
         i += (long long)gridDim.x * blockDim.x) {
        const long long g = i / words;
        const long long w = i - g * words;
        const unsigned int a = in[wires[2 * g] * words + w];
        const unsigned int b = in[wires[2 * g + 1] * words + w];
        const unsigned int op = ops[g];
        out[i] = (spread(op, 3) & ~a & ~b) | (spread(op, 2) & ~a & b) | (spread(op, 1) & a & ~b) |
                 (spread(op, 0) & a & b);
    }
}

// One word of an N-input table: the mux tree of its 2^N entries over the input words, i.e. the Shannon expansion
// f = x_{N-1} ? f_hi : f_lo applied down to the entries. Entry k is bit k % 32 of table[k / 32] (address
// sum x_j 2^j, FORMAT.md 3.4), spread to a whole word. The tree is built bottom-up in entry order with one pending
// subtree per level: entry k closes the subtrees of the levels l below the lowest 0 bit of k, each merged as
// x_l ? (the new subtree) : (the pending one). With N a template argument the loops unroll completely, so every
// index is a constant and the words stay in registers: 2^N - 1 muxes of 3 operations for 32 samples.
template <int N>
__device__ __forceinline__ unsigned int lut_word(const unsigned int* in, const int* wires,
                                                 const unsigned int* table, long long words, long long w) {
    constexpr int table_words = ((1 << N) + 31) / 32;
    unsigned int x[N];
#pragma unroll
    for (int j = 0; j < N; ++j) x[j] = in[wires[j] * words + w];
    unsigned int t[table_words];
#pragma unroll
    for (int k = 0; k < table_words; ++k) t[k] = table[k];
    unsigned int pending[N];
    unsigned int result = 0u;
#pragma unroll
    for (int k = 0; k < (1 << N); ++k) {
        unsigned int v = spread(t[k >> 5], k & 31);
        int l = 0;
#pragma unroll
        for (; l < N && ((k >> l) & 1); ++l) v = pending[l] ^ ((pending[l] ^ v) & x[l]);
        if (l < N) {
            pending[l] = v;
        } else {
            result = v;  // the last entry (all bits 1) closes the root
        }
    }
    return result;
}

// LUT layer of arity N, one thread per (table, word), item i = l * words + w: a warp handles 32 consecutive words
// of one table, so its wire and table loads are the same address for every lane.
template <int N>
__device__ void lut_planes_n(const unsigned int* in, const int* wires, const unsigned int* tables,
                             unsigned int* out, int luts, long long words) {
    constexpr int table_words = ((1 << N) + 31) / 32;
    const long long items = (long long)luts * words;
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < items;
         i += (long long)gridDim.x * blockDim.x) {
        const long long l = i / words;
        out[i] = lut_word<N>(in, wires + l * N, tables + l * table_words, words, i - l * words);
    }
}

__device__ void lut_planes(const unsigned int* in, const int* wires, const unsigned int* tables, unsigned int* out,
                           int luts, int arity, long long words) {
    // The arity is the same for every thread: the switch does not diverge. FORMAT.md allows 1..=8.
    switch (arity) {
        case 1: lut_planes_n<1>(in, wires, tables, out, luts, words); break;
        case 2: lut_planes_n<2>(in, wires, tables, out, luts, words); break;
        case 3: lut_planes_n<3>(in, wires, tables, out, luts, words); break;
        case 4: lut_planes_n<4>(in, wires, tables, out, luts, words); break;
        case 5: lut_planes_n<5>(in, wires, tables, out, luts, words); break;
        case 6: lut_planes_n<6>(in, wires, tables, out, luts, words); break;
        case 7: lut_planes_n<7>(in, wires, tables, out, luts, words); break;
        case 8: lut_planes_n<8>(in, wires, tables, out, luts, words); break;
        default: break;  // rejected on the host
    }
}

// Planes [width, words] to rows [32 * words, row_words]. Unit u = w * row_words + k is the 32x32 block of planes
// 32k .. 32k + 31 (lane l loads plane 32k + l, or 0 past the width) and samples 32w .. 32w + 31; five
// exchange-and-swap steps transpose it (step m swaps the off-diagonal m x m sub-blocks of every 2m x 2m block), after
// which lane l holds word k of row 32w + l.
__device__ void planes_to_rows(const unsigned int* planes, unsigned int* rows, int width, int row_words,
                               long long words) {
    const long long per_block = blockDim.x >> 5;
    const long long units = words * row_words;
    const unsigned int me = lane();
    for (long long base = (long long)blockIdx.x * per_block; base < units; base += (long long)gridDim.x * per_block) {
        const long long u = base + (threadIdx.x >> 5);
        const bool active = u < units;
        long long w = 0, k = 0;
        unsigned int v = 0u;
        if (active) {
            w = u / row_words;
            k = u - w * row_words;
            const long long j = 32 * k + me;
            if (j < width) v = planes[j * words + w];
        }
        unsigned int low = 0x0000ffffu;  // the bits of the left (lower-column) half of each block
        for (int m = 16; m > 0; m >>= 1, low ^= low << m) {
            const unsigned int partner = __shfl_xor_sync(0xffffffffu, v, m);
            // A lane in the upper half of its block takes the partner's right half into its left half; a lane in
            // the lower half takes the partner's left half into its right half.
            v = (me & (unsigned int)m) ? (v & ~low) | ((partner >> m) & low) : (v & low) | ((partner & low) << m);
        }
        if (active) rows[(32 * w + me) * row_words + k] = v;
    }
}

// XNOR-popcount layer, one thread per (output, sample), the lanes of a warp being 32 consecutive samples of one
// output; unit u = w * outputs + o, so the warps of a block read the same rows (cached) with different weights.
// matches = inputs - popcount(row ^ weights): padding bits are 0 in both and add nothing. The ballot packs the 32
// output bits into word w of plane o.
__device__ void binary_planes(const unsigned int* rows, const unsigned int* weights, const int* thresholds,
                              unsigned int* out, int outputs, int inputs, int row_words, long long words) {
    const long long per_block = blockDim.x >> 5;
    const long long units = words * outputs;
    for (long long base = (long long)blockIdx.x * per_block; base < units; base += (long long)gridDim.x * per_block) {
        const long long u = base + (threadIdx.x >> 5);
        const bool active = u < units;
        long long o = 0, w = 0;
        bool bit = false;
        if (active) {
            w = u / outputs;
            o = u - w * outputs;
            const unsigned int* row = rows + (32 * w + lane()) * row_words;
            const unsigned int* weight = weights + o * row_words;
            long long mismatches = 0;
            for (int k = 0; k < row_words; ++k) mismatches += __popc(row[k] ^ weight[k]);
            bit = inputs - mismatches >= thresholds[o];
        }
        const unsigned int word = __ballot_sync(0xffffffffu, bit);
        if (active && lane() == 0) out[o * words + w] = word;
    }
}

// GroupSum: one thread per (sample, class), item i = s * classes + c (the index of scores [n, classes]); the score
// is the popcount of bits c * group .. (c + 1) * group of the sample's row, the end words masked.
__device__ void group_sum_rows(const unsigned int* rows, int* scores, int classes, int group, int row_words,
                               long long n) {
    const long long items = n * classes;
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < items;
         i += (long long)gridDim.x * blockDim.x) {
        const long long s = i / classes;
        const long long c = i - s * classes;
        const unsigned int* row = rows + s * row_words;
        const long long first = c * group, last = first + group - 1;
        int count = 0;
        for (long long k = first >> 5; k <= last >> 5; ++k) {
            unsigned int word = row[k];
            if (k == first >> 5) word &= ~0u << (first & 31);
            if (k == last >> 5) word &= ~0u >> (31 - (last & 31));
            count += __popc(word);
        }
        scores[i] = count;
    }
}

}  // namespace bitlogic

extern "C" __global__ void infer_pack(const unsigned char* bits, unsigned int* planes, int num_bits, long long n,
                                      long long words) {
    bitlogic::pack_planes(bits, planes, num_bits, n, words);
}

extern "C" __global__ void infer_gates(const unsigned int* in, const int* wires, const unsigned char* ops,
                                       unsigned int* out, int gates, long long words) {
    bitlogic::gate_planes(in, wires, ops, out, gates, words);
}

extern "C" __global__ void infer_luts(const unsigned int* in, const int* wires, const unsigned int* tables,
                                      unsigned int* out, int luts, int arity, long long words) {
    bitlogic::lut_planes(in, wires, tables, out, luts, arity, words);
}

extern "C" __global__ void infer_rows(const unsigned int* planes, unsigned int* rows, int width, int row_words,
                                      long long words) {
    bitlogic::planes_to_rows(planes, rows, width, row_words, words);
}

extern "C" __global__ void infer_binary(const unsigned int* rows, const unsigned int* weights, const int* thresholds,
                                        unsigned int* out, int outputs, int inputs, int row_words, long long words) {
    bitlogic::binary_planes(rows, weights, thresholds, out, outputs, inputs, row_words, words);
}

extern "C" __global__ void infer_group_sum(const unsigned int* rows, int* scores, int classes, int group,
                                           int row_words, long long n) {
    bitlogic::group_sum_rows(rows, scores, classes, group, row_words, n);
}
