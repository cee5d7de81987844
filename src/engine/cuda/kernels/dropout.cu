// Inverted dropout with counter-based masks (engine/dropout.rs, rng.rs): element i of a site keyed `key` is
// kept iff hash_uniform(key, i) ≥ p, and kept values are scaled by 1/(1 − p). The hash is splitmix64, ported
// bit for bit with 64-bit integer operations, so the GPU drops exactly the elements the CPU drops.
#include "common.cuh"

__device__ __forceinline__ unsigned long long splitmix64(unsigned long long z) {
    z += 0x9E3779B97F4A7C15ull;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

// A uniform float in [0, 1) with 24 random bits: (h >> 40)·2^−24, exact in float.
__device__ __forceinline__ float hash_uniform(unsigned long long key, unsigned long long counter) {
    const unsigned long long h = splitmix64(key ^ splitmix64(counter));
    return (float)(h >> 40) * (1.0f / 16777216.0f);
}

// out (n) = inp (n) · mask(key, i) / (1 − p), the factor 0 or 1/(1 − p) formed in double and rounded to
// float (as Dropout::factor). out may be inp. Also the backward: the mask is its own adjoint.
extern "C" __global__ void dropout_forward(floatX* out, const floatX* inp, int n, unsigned long long key, float p) {
    const unsigned long long i = global_id();
    if (i >= (unsigned long long)n) return;
    const float f = hash_uniform(key, i) >= p ? (float)(1.0 / (1.0 - (double)p)) : 0.0f;
    stx(out + i, ldx(inp + i) * f);
}
