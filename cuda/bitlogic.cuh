// Helpers shared by every kernel source. NVRTC compiles these files without the CUDA toolkit's headers, so they
// use only built-in types and intrinsics: no <cstdint>, no <cuda_bf16.h> (bfloat16 values travel as their 16 bits).
// The same text also compiles as host C++ for the CPU emulator of the tests, which supplies the intrinsics.
#pragma once

namespace bitlogic {

typedef unsigned short bf16;  // the 16 high bits of a float32

__device__ __forceinline__ float load(const float* p, long long i) { return p[i]; }
__device__ __forceinline__ double load(const double* p, long long i) { return p[i]; }
__device__ __forceinline__ float load(const bf16* p, long long i) { return __uint_as_float((unsigned int)p[i] << 16); }

__device__ __forceinline__ void store(float* p, long long i, float v) { p[i] = v; }
__device__ __forceinline__ void store(double* p, long long i, double v) { p[i] = v; }
// Round to nearest, ties to even, as torch converts float32 to bfloat16; NaN becomes torch's quiet NaN.
__device__ __forceinline__ bf16 to_bf16(float v) {
    unsigned int u = __float_as_uint(v);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (bf16)0x7fc0u;
    u += 0x7fffu + ((u >> 16) & 1u);
    return (bf16)(u >> 16);
}
__device__ __forceinline__ void store(bf16* p, long long i, float v) { p[i] = to_bf16(v); }

// Sum over the 32 lanes of a warp; every lane of the block must call it (the emulator synchronizes the block).
template <typename F>
__device__ __forceinline__ F warp_sum(F v) {
    for (int offset = 16; offset > 0; offset >>= 1) v += __shfl_xor_sync(0xffffffffu, v, offset);
    return v;
}

// The arithmetic type of an activation type: float for float and bfloat16, double for double (the float64 kernels
// exist for torch.autograd.gradcheck).
template <typename T>
struct Compute {
    typedef float type;
};
template <>
struct Compute<double> {
    typedef double type;
};

__device__ __forceinline__ unsigned int lane() { return threadIdx.x & 31u; }

}  // namespace bitlogic
