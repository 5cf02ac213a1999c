// Bit-sliced inference of a compiled network (python/bitlogic/gpu/inference.py): the CPU engine's program, run
// step by step, bit-exact with the CPU engine and with python/bitlogic/reference.py.
//
// The program works on numbered slots, each one bit plane over the batch: uint32 slots [num_slots, words],
// words = ceil(N / 32), bit s of word w of slot j holding slot j's bit of sample 32w + s. Slots 0 .. num_inputs - 1
// are the encoder bits the program reads, the next two the constants FALSE and TRUE; the CPU engine reuses every
// other slot as soon as its last reader has run. Operations therefore run in program order: one thread per word runs
// a whole stretch of them, so no two threads ever touch the same word and a reused slot is never raced on, and the
// threads of a warp read and write 32 consecutive words of one slot (coalesced). Binary steps and the class sums need
// all bits of one sample instead, so they read sample rows: uint32 [32 * words, row_words], row_words =
// ceil(count / 32), bit b of word k of row s being bit 32k + b of the gathered slots of sample s (bits past `count`
// are 0). gather_rows makes them from a list of slots, 32x32 bits per warp.
//
// Every word of every slot a step reads has been written, including the samples past N in the last word (pack's
// zeros run through the program), so no kernel reads an unwritten word; the head writes only the first N rows'
// scores.
//
// Kernels that exchange values between lanes (ballot, shuffle) loop over warp-sized units with the whole grid, every
// thread of a block running the same number of iterations (a warp past the end runs them inactive): the exchanges
// need all 32 lanes, and the CPU emulator of the tests needs every thread of the block. The others stride over
// items with the whole grid. Either way a capped grid covers any size.
#include "bitlogic.cuh"

namespace bitlogic {

// All ones where bit k of v is 1, else all zeros.
__device__ __forceinline__ unsigned int spread(unsigned int v, int k) { return 0u - ((v >> k) & 1u); }

// x ? hi : lo, bit by bit.
__device__ __forceinline__ unsigned int mux(unsigned int x, unsigned int lo, unsigned int hi) {
    return lo ^ ((lo ^ hi) & x);
}

// Input bits, bytes [num_bits, n] (0 or 1: a torch bool tensor, bit-major so that a warp reads 32 consecutive
// bytes): row select[i] becomes slot i, for i < count. Unit u = i * words + w is word w of slot i, so the store goes
// to slots[u].
__device__ void pack_slots(const unsigned char* bits, const unsigned int* select, unsigned int* slots, int count,
                           long long n, long long words) {
    const long long per_block = blockDim.x >> 5;
    const long long units = (long long)count * words;
    for (long long base = (long long)blockIdx.x * per_block; base < units; base += (long long)gridDim.x * per_block) {
        const long long u = base + (threadIdx.x >> 5);
        const bool active = u < units;
        bool bit = false;
        if (active) {
            const long long i = u / words;
            const long long s = (u - i * words) * 32 + lane();
            bit = s < n && bits[(long long)select[i] * n + s] != 0;  // samples past n are 0
        }
        const unsigned int word = __ballot_sync(0xffffffffu, bit);
        if (active && lane() == 0) slots[u] = word;
    }
}

// The three-input function imm of (a, b, c), bit by bit: bit a + 2b + 4c of imm is the output for (a, b, c), the
// engine's convention (rust/bitlogic/src/exec.rs). The mux tree selects on a, then b, then c: seven muxes, no branch
// on imm, which is the same for every thread (so reading it costs one broadcast load).
__device__ __forceinline__ unsigned int tern(unsigned int imm, unsigned int a, unsigned int b, unsigned int c) {
    const unsigned int q0 = mux(b, mux(a, spread(imm, 0), spread(imm, 1)), mux(a, spread(imm, 2), spread(imm, 3)));
    const unsigned int q1 = mux(b, mux(a, spread(imm, 4), spread(imm, 5)), mux(a, spread(imm, 6), spread(imm, 7)));
    return mux(c, q0, q1);
}

// Operations start .. end - 1 of the program, in order, one thread per word w: ops [M, 4] are the slots a, b, c and
// out, imms [M] their truth tables. The inputs are read before the output is written: an operation may write the
// slot of one of its own inputs, as on the CPU.
// (ops and imms are never written, so the compiler may load them ahead of the stores to the slots.)
__device__ void run_ops(unsigned int* slots, const unsigned int* __restrict__ ops,
                        const unsigned char* __restrict__ imms, long long start, long long end, long long words) {
    for (long long w = (long long)blockIdx.x * blockDim.x + threadIdx.x; w < words;
         w += (long long)gridDim.x * blockDim.x) {
        unsigned int* column = slots + w;
        for (long long i = start; i < end; ++i) {
            const unsigned int* op = ops + 4 * i;
            const unsigned int a = column[op[0] * words], b = column[op[1] * words], c = column[op[2] * words];
            column[op[3] * words] = tern(imms[i], a, b, c);
        }
    }
}

// Slots members[0 .. count - 1] to rows [32 * words, row_words]. Unit u = w * row_words + k is the 32x32 block of
// members 32k .. 32k + 31 (lane l loads the slot of member 32k + l, or 0 past the count) and samples 32w .. 32w + 31;
// five exchange-and-swap steps transpose it (step m swaps the off-diagonal m x m sub-blocks of every 2m x 2m block),
// after which lane l holds word k of row 32w + l.
__device__ void gather_rows(const unsigned int* slots, const unsigned int* members, int count, unsigned int* rows,
                            int row_words, long long words) {
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
            if (j < count) v = slots[members[j] * words + w];
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

// A binary step, one thread per (output, sample), the lanes of a warp being 32 consecutive samples of one output;
// unit u = w * outputs + o, so the warps of a block read the same rows (cached) with different weights.
// matches = inputs - popcount(row ^ weights): padding bits are 0 in both and add nothing (inputs the program reads
// inverted have their weight bits flipped already). The ballot packs the 32 output bits into word w of the output's
// slot, which is none of the step's inputs (and the rows are a copy of those anyway).
__device__ void binary_step(const unsigned int* rows, const unsigned int* weights, const int* thresholds,
                            const unsigned int* outputs, unsigned int* slots, int num_outputs, int inputs,
                            int row_words, long long words) {
    const long long per_block = blockDim.x >> 5;
    const long long units = words * num_outputs;
    for (long long base = (long long)blockIdx.x * per_block; base < units; base += (long long)gridDim.x * per_block) {
        const long long u = base + (threadIdx.x >> 5);
        const bool active = u < units;
        long long o = 0, w = 0;
        bool bit = false;
        if (active) {
            w = u / num_outputs;
            o = u - w * num_outputs;
            const unsigned int* row = rows + (32 * w + lane()) * row_words;
            const unsigned int* weight = weights + o * row_words;
            long long mismatches = 0;
            for (int k = 0; k < row_words; ++k) mismatches += __popc(row[k] ^ weight[k]);
            bit = inputs - mismatches >= thresholds[o];
        }
        const unsigned int word = __ballot_sync(0xffffffffu, bit);
        if (active && lane() == 0) slots[outputs[o] * words + w] = word;
    }
}

// The 1 bits of row bits first .. end - 1.
__device__ __forceinline__ int count_range(const unsigned int* row, long long first, long long end) {
    if (first >= end) return 0;
    const long long last = end - 1;
    int count = 0;
    for (long long k = first >> 5; k <= last >> 5; ++k) {
        unsigned int word = row[k];
        if (k == first >> 5) word &= ~0u << (first & 31);
        if (k == last >> 5) word &= ~0u >> (31 - (last & 31));
        count += __popc(word);
    }
    return count;
}

// The class sums: one thread per (sample, class), item i = s * classes + c (the index of scores [n, classes]). The
// rows hold the members of every class in turn; bounds [classes, 4] = (first, first inverted, end, ones): class c
// counts members first .. first inverted - 1 as they are, the rest up to end complemented, plus `ones` bits known to
// be 1. int32, like the CPU engine.
__device__ void class_sums(const unsigned int* rows, const int* bounds, int* scores, int classes, int row_words,
                           long long n) {
    const long long items = n * classes;
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < items;
         i += (long long)gridDim.x * blockDim.x) {
        const long long s = i / classes;
        const long long c = i - s * classes;
        const unsigned int* row = rows + s * row_words;
        const int* b = bounds + 4 * c;
        scores[i] = count_range(row, b[0], b[1]) + (b[2] - b[1]) - count_range(row, b[1], b[2]) + b[3];
    }
}

}  // namespace bitlogic

extern "C" __global__ void infer_pack(const unsigned char* bits, const unsigned int* select, unsigned int* slots,
                                      int count, long long n, long long words) {
    bitlogic::pack_slots(bits, select, slots, count, n, words);
}

extern "C" __global__ void infer_ops(unsigned int* slots, const unsigned int* ops, const unsigned char* imms,
                                     long long start, long long end, long long words) {
    bitlogic::run_ops(slots, ops, imms, start, end, words);
}

extern "C" __global__ void infer_rows(const unsigned int* slots, const unsigned int* members, int count,
                                      unsigned int* rows, int row_words, long long words) {
    bitlogic::gather_rows(slots, members, count, rows, row_words, words);
}

extern "C" __global__ void infer_binary(const unsigned int* rows, const unsigned int* weights, const int* thresholds,
                                        const unsigned int* outputs, unsigned int* slots, int num_outputs, int inputs,
                                        int row_words, long long words) {
    bitlogic::binary_step(rows, weights, thresholds, outputs, slots, num_outputs, inputs, row_words, words);
}

extern "C" __global__ void infer_class_sums(const unsigned int* rows, const int* bounds, int* scores, int classes,
                                            int row_words, long long n) {
    bitlogic::class_sums(rows, bounds, scores, classes, row_words, n);
}
