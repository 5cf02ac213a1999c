// A CPU emulator of the CUDA features the kernels of cuda/ use, for the tests: the kernel sources compile as host
// C++ against this header, and a launch runs every block of the grid with one OS thread per thread of the block.
// __syncthreads is a barrier over the block; the warp exchanges go through a block-wide buffer with two barriers, so
// every thread of a block must reach them the same number of times and blocks hold a multiple of 32 threads (what
// the kernels promise anyway). Blocks run one after another; __shared__ variables are statics, which is exactly
// "one per block" then.
#pragma once
#include <atomic>
#include <barrier>
#include <cstring>
#include <thread>
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
inline dim3 grid_dim, block_dim;
inline thread_local dim3 thread_index, block_index;
inline std::barrier<>* block_barrier = nullptr;
inline std::vector<unsigned long long> exchange;
inline thread_local unsigned int linear = 0;

inline void sync() { block_barrier->arrive_and_wait(); }

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

// dims: grid x, y, z, block x, y, z; args: one pointer per kernel parameter, as cuLaunchKernel takes them.
template <typename... A>
void launch(void (*kernel)(A...), const unsigned int* dims, void** args) {
    grid_dim = {dims[0], dims[1], dims[2]};
    block_dim = {dims[3], dims[4], dims[5]};
    const unsigned int threads = dims[3] * dims[4] * dims[5];
    std::barrier<> barrier(threads);
    block_barrier = &barrier;
    exchange.assign(threads, 0);
    std::vector<std::thread> team;
    team.reserve(threads);
    for (unsigned int t = 0; t < threads; ++t) {
        team.emplace_back([=, &barrier] {
            linear = t;
            thread_index = {t % dims[3], (t / dims[3]) % dims[4], t / (dims[3] * dims[4])};
            for (unsigned int z = 0; z < dims[2]; ++z)
                for (unsigned int y = 0; y < dims[1]; ++y)
                    for (unsigned int x = 0; x < dims[0]; ++x) {
                        block_index = {x, y, z};
                        call(kernel, args, std::index_sequence_for<A...>{});
                        barrier.arrive_and_wait();  // the next block starts when every thread is done
                    }
        });
    }
    for (auto& thread : team) thread.join();
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
inline float atomicAdd(float* address, float value) { return std::atomic_ref<float>(*address).fetch_add(value); }
inline unsigned int atomicOr(unsigned int* address, unsigned int value) {
    return std::atomic_ref<unsigned int>(*address).fetch_or(value);
}
template <typename T>
inline T __ldg(const T* p) {
    return *p;
}
