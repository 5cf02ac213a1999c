// A CPU emulator of the CUDA features the kernels of cuda/ use, for the tests: the kernel sources compile as host
// C++ against this header, and a launch runs every block of the grid with one fiber (a ucontext coroutine) per thread
// of the block, all on the calling OS thread. A fiber runs until it reaches __syncthreads (or a warp exchange, which
// is built from two barriers over a block-wide buffer) and then yields; a round ends when every fiber of the block
// has yielded or finished. If some threads of a block finish while others wait at a barrier, the block has diverged
// (undefined behaviour on a GPU): the launch stops and reports it instead of hanging. Kernels therefore keep every
// thread of a block reaching barriers and warp exchanges the same number of times, with blocks of a multiple of 32
// threads. Blocks run one after another, so __shared__ variables as statics are exactly "one per block".
#pragma once
#include <ucontext.h>

#include <cstdio>
#include <cstring>
#include <memory>
#include <type_traits>
#include <utility>
#include <vector>

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __shared__ static

struct dim3 {
    unsigned int x = 1, y = 1, z = 1;
};
using uint3 = dim3;

namespace emulator {
inline dim3 grid_dim, block_dim, thread_index, block_index;
inline unsigned int linear = 0;  // the running fiber's thread index within the block
inline std::vector<unsigned long long> exchange;

struct Fiber {
    ucontext_t context;
    bool done = false;
};
inline std::vector<Fiber> fibers;
inline ucontext_t scheduler;
inline void (*body)() = nullptr;  // the kernel call of the current launch

inline void sync() { swapcontext(&fibers[linear].context, &scheduler); }

inline void fiber_main() {
    body();
    fibers[linear].done = true;  // returning resumes the scheduler through uc_link
}

template <typename T>
T swap_with(T value, unsigned int partner) {
    static_assert(sizeof(T) <= sizeof(unsigned long long));
    unsigned long long bits = 0;
    std::memcpy(&bits, &value, sizeof(T));
    exchange[linear] = bits;
    sync();
    bits = exchange[partner];
    sync();
    T out;
    std::memcpy(&out, &bits, sizeof(T));
    return out;
}

template <typename... A, std::size_t... I>
void call(void (*kernel)(A...), void** args, std::index_sequence<I...>) {
    kernel(*static_cast<std::remove_cv_t<std::remove_reference_t<A>>*>(args[I])...);
}

// Runs the grid; 0 on success, 1 if a block diverged at a barrier. dims: grid x, y, z, block x, y, z; args: one
// pointer per kernel parameter, as cuLaunchKernel takes them.
template <typename... A>
int launch(void (*kernel)(A...), const unsigned int* dims, void** args) {
    static void (*current)(A...);
    static void** current_args;
    current = kernel;
    current_args = args;
    body = [] { call(current, current_args, std::index_sequence_for<A...>{}); };
    grid_dim = {dims[0], dims[1], dims[2]};
    block_dim = {dims[3], dims[4], dims[5]};
    const unsigned int threads = dims[3] * dims[4] * dims[5];
    constexpr std::size_t stack_size = 64 * 1024;
    std::unique_ptr<char[]> stacks(new char[stack_size * threads]);
    exchange.assign(threads, 0);
    fibers.assign(threads, Fiber{});
    for (unsigned int z = 0; z < dims[2]; ++z)
        for (unsigned int y = 0; y < dims[1]; ++y)
            for (unsigned int x = 0; x < dims[0]; ++x) {
                block_index = {x, y, z};
                for (unsigned int t = 0; t < threads; ++t) {
                    Fiber& f = fibers[t];
                    f.done = false;
                    getcontext(&f.context);
                    f.context.uc_stack.ss_sp = stacks.get() + stack_size * t;
                    f.context.uc_stack.ss_size = stack_size;
                    f.context.uc_link = &scheduler;
                    makecontext(&f.context, fiber_main, 0);
                }
                for (unsigned int live = threads; live > 0;) {
                    unsigned int finished = 0;
                    for (unsigned int t = 0; t < threads; ++t) {
                        if (fibers[t].done) continue;
                        linear = t;
                        thread_index = {t % dims[3], (t / dims[3]) % dims[4], t / (dims[3] * dims[4])};
                        swapcontext(&scheduler, &fibers[t].context);
                        finished += fibers[t].done;
                    }
                    if (finished && finished != live) {
                        std::fprintf(stderr, "emulator: block (%u, %u, %u) diverged: %u threads finished while %u wait "
                                     "at a barrier\n", x, y, z, finished, live - finished);
                        return 1;
                    }
                    live -= finished;
                }
            }
    return 0;
}
}  // namespace emulator

#define threadIdx (emulator::thread_index)
#define blockIdx (emulator::block_index)
#define blockDim (emulator::block_dim)
#define gridDim (emulator::grid_dim)

inline void __syncthreads() { emulator::sync(); }

template <typename T>
inline T __shfl_xor_sync(unsigned int, T value, int lane_mask) {
    return emulator::swap_with(value, emulator::linear ^ (unsigned int)lane_mask);
}

inline unsigned int __ballot_sync(unsigned int, int predicate) {
    emulator::exchange[emulator::linear] = predicate ? 1 : 0;
    emulator::sync();
    const unsigned int first = emulator::linear & ~31u;
    unsigned int bits = 0;
    for (unsigned int l = 0; l < 32; ++l) bits |= (emulator::exchange[first + l] ? 1u : 0u) << l;
    emulator::sync();
    return bits;
}

inline float __uint_as_float(unsigned int u) {
    float f;
    std::memcpy(&f, &u, 4);
    return f;
}
inline unsigned int __float_as_uint(float f) {
    unsigned int u;
    std::memcpy(&u, &f, 4);
    return u;
}
inline int __popc(unsigned int v) { return __builtin_popcount(v); }
inline int __popcll(unsigned long long v) { return __builtin_popcountll(v); }
// One OS thread runs every fiber, and fibers switch only at barriers: plain read-modify-writes are atomic here.
inline float atomicAdd(float* address, float value) {
    float old = *address;
    *address = old + value;
    return old;
}
inline unsigned int atomicOr(unsigned int* address, unsigned int value) {
    unsigned int old = *address;
    *address = old | value;
    return old;
}
template <typename T>
inline T __ldg(const T* p) {
    return *p;
}
