// The MLP's activations, forward and backward side by side (cpu/gelu.rs, cpu/relu.rs), elementwise over n:
//   forward   out (n) = act(inp (n))
//   backward  d (n) *= act'(inp (n)), in place (the reference's remake-with-derivative, then d ← d·grad)
// The constants are the reference's f64 values rounded to float; fmaf where the reference has mul_add.
#include "common.cuh"

#define FRAC_1_SQRT_2 0.70710678118654752440      // 1/√2
#define INV_SQRT_2PI 0.39894228040143267794       // 0.5·(2/√π)·(1/√2) = 1/√(2π)
#define SQRT_2_OVER_PI 0.7978845608028654         // √(2/π)
#define GELU_TANH_CUBIC 0.044715

// ------------------------------------------------------------------------------------- GELU, erf form
// gelu(x) = ½x·(1 + erf(x/√2)),  gelu'(x) = ½(1 + erf) + x·e^{−x²/2}/√(2π)

__device__ __forceinline__ float gelu_erf(float x) {
    const float hx = 0.5f * x;
    return fmaf(hx, erff(x * (float)FRAC_1_SQRT_2), hx);
}

__device__ __forceinline__ float gelu_erf_grad(float x) {
    const float y = x * (float)FRAC_1_SQRT_2;
    const float cdf = 0.5f * (1.0f + erff(y));
    const float gauss = expf(-y * y);
    return fmaf(x, gauss * (float)INV_SQRT_2PI, cdf);
}

extern "C" __global__ void gelu_erf_forward(floatX* out, const floatX* inp, int n) {
    const unsigned long long i = global_id();
    if (i < (unsigned long long)n) stx(out + i, gelu_erf(ldx(inp + i)));
}

extern "C" __global__ void gelu_erf_backward(floatX* d, const floatX* inp, int n) {
    const unsigned long long i = global_id();
    if (i < (unsigned long long)n) stx(d + i, ldx(d + i) * gelu_erf_grad(ldx(inp + i)));
}

// ------------------------------------------------------------------------------------ GELU, tanh form
// gelu(x) = x·s,  s = ½(1 + tanh u) = 1/(1 + e^{−2u}),  u = √(2/π)(x + 0.044715x³)
// gelu'(x) = s + x·s(1 − s)·2u',  2u' = 2√(2/π)(1 + 3·0.044715x²)

__device__ __forceinline__ float gelu_tanh_s(float x) {
    const float u = (float)SQRT_2_OVER_PI * fmaf(x * x * x, (float)GELU_TANH_CUBIC, x);
    return 1.0f / (1.0f + expf(-2.0f * u));
}

extern "C" __global__ void gelu_tanh_forward(floatX* out, const floatX* inp, int n) {
    const unsigned long long i = global_id();
    if (i >= (unsigned long long)n) return;
    const float x = ldx(inp + i);
    stx(out + i, x * gelu_tanh_s(x));
}

extern "C" __global__ void gelu_tanh_backward(floatX* d, const floatX* inp, int n) {
    const unsigned long long i = global_id();
    if (i >= (unsigned long long)n) return;
    const float x = ldx(inp + i), s = gelu_tanh_s(x);
    const float du2 = (float)(2.0 * SQRT_2_OVER_PI) * fmaf(x * x, (float)(3.0 * GELU_TANH_CUBIC), 1.0f);
    stx(d + i, ldx(d + i) * fmaf(x * s * (1.0f - s), du2, s));
}

// ----------------------------------------------------------------------------------------------- ReLU
// relu(x) = max(x, 0) (NaN passes through, as PyTorch's),  relu'(x) = 1 if x > 0 else 0

extern "C" __global__ void relu_forward(floatX* out, const floatX* inp, int n) {
    const unsigned long long i = global_id();
    if (i >= (unsigned long long)n) return;
    const float x = ldx(inp + i);
    stx(out + i, x < 0.0f ? 0.0f : x);
}

extern "C" __global__ void relu_backward(floatX* d, const floatX* inp, int n) {
    const unsigned long long i = global_id();
    if (i >= (unsigned long long)n) return;
    stx(d + i, ldx(d + i) * (ldx(inp + i) > 0.0f ? 1.0f : 0.0f));
}
