// common.cuh: what every kernel file shares, given to NVRTC as the header "common.cuh" (nvrtc.rs).
//
// floatX is the plan's activation type: __nv_bfloat16 when the file is compiled with -DQG_BF16, else float.
// Kernels load X values as float (ldx), compute in float and store by rounding once (stx, round to nearest
// even). Reductions run in a fixed order: a warp's butterfly (every lane ends with the same bits, since
// a + b = b + a), then the block's warps in lane order. No atomics anywhere, so every result is the same
// on every run.
//
// Arithmetic. The f32 build is compiled with --fmad=false, so that a·b + c rounds twice as it does in the
// CPU reference (Rust never contracts); where the reference calls mul_add the kernels call fmaf. The bf16
// build keeps NVRTC's default contraction. Neither uses fast math: expf, erff, logf, division and sqrtf
// are the accurate ones (the kernels are memory-bound; the approximate forms would buy nothing).
#pragma once

#ifdef QG_BF16
#include <cuda_bf16.h>
typedef __nv_bfloat16 floatX;
__device__ __forceinline__ float ldx(const floatX* p) { return __bfloat162float(*p); }
__device__ __forceinline__ floatX tox(float v) { return __float2bfloat16_rn(v); }
#else
typedef float floatX;
__device__ __forceinline__ float ldx(const floatX* p) { return *p; }
__device__ __forceinline__ floatX tox(float v) { return v; }
#endif

// Stores v into *p as floatX.
__device__ __forceinline__ void stx(floatX* p, float v) { *p = tox(v); }

// v as the floatX it would be stored as, back in float (identity in the f32 build).
__device__ __forceinline__ float roundx(float v) {
    floatX x = tox(v);
    return ldx(&x);
}

#define WARP 32
#define NEG_INF (-__int_as_float(0x7f800000))

// The global index of this thread over a 1-D grid, in 64 bits.
__device__ __forceinline__ unsigned long long global_id() {
    return (unsigned long long)blockIdx.x * blockDim.x + threadIdx.x;
}

// The warp-per-row kernels: row = blockIdx.x · (warps per block) + warp.
__device__ __forceinline__ unsigned long long warp_row() {
    return (unsigned long long)blockIdx.x * (blockDim.x / WARP) + threadIdx.x / WARP;
}

__device__ __forceinline__ int lane_id() { return threadIdx.x % WARP; }

// Σ over the warp; every lane gets the same bits.
__device__ __forceinline__ float warp_sum(float v) {
    for (int o = WARP / 2; o > 0; o /= 2) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

__device__ __forceinline__ double warp_sum_f64(double v) {
    for (int o = WARP / 2; o > 0; o /= 2) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

// max over the warp (fmaxf: a NaN loses to a number, as Rust's f32::max).
__device__ __forceinline__ float warp_max(float v) {
    for (int o = WARP / 2; o > 0; o /= 2) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}

// Σ over the block (blockDim.x a multiple of 32, at most 1024); every thread gets the same bits. Every
// thread of the block must call it; `shared` holds 32 floats and may be reused after the call returns.
__device__ __forceinline__ float block_sum(float v, float* shared) {
    const int lane = lane_id(), warp = threadIdx.x / WARP, warps = blockDim.x / WARP;
    v = warp_sum(v);
    if (lane == 0) shared[warp] = v;
    __syncthreads();
    v = warp_sum(lane < warps ? shared[lane] : 0.0f);
    __syncthreads();
    return v;
}

__device__ __forceinline__ double block_sum_f64(double v, double* shared) {
    const int lane = lane_id(), warp = threadIdx.x / WARP, warps = blockDim.x / WARP;
    v = warp_sum_f64(v);
    if (lane == 0) shared[warp] = v;
    __syncthreads();
    v = warp_sum_f64(lane < warps ? shared[lane] : 0.0);
    __syncthreads();
    return v;
}

__device__ __forceinline__ float block_max(float v, float* shared) {
    const int lane = lane_id(), warp = threadIdx.x / WARP, warps = blockDim.x / WARP;
    v = warp_max(v);
    if (lane == 0) shared[warp] = v;
    __syncthreads();
    v = warp_max(lane < warps ? shared[lane] : NEG_INF);
    __syncthreads();
    return v;
}

// 1 / (1 + e^{−x}), as the reference's sigmoid.
__device__ __forceinline__ float sigmoidf(float x) { return 1.0f / (1.0f + expf(-x)); }
