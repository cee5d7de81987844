// Reductions and conversions: column sums in two fixed stages (the parameter gradients of LayerNorm and of
// the biases), the partial sums of squares of the gradient norm, scaling and the cast to floatX.
#include "common.cuh"

// partial (R, C): partial[r] = Σ of the rows [r·⌈N/R⌉, (r+1)·⌈N/R⌉) ∩ [0, N) of inp (N, C), from 0, in row
// order. A block per chunk r, threads over columns (coalesced).
extern "C" __global__ void column_sum_partial(float* partial, const floatX* inp, int N, int C, int R) {
    const int r = blockIdx.x;
    if (r >= R) return;
    const long long per = ((long long)N + R - 1) / R;
    const long long r0 = r * per, r1 = min((long long)N, r0 + per);
    for (int c = threadIdx.x; c < C; c += blockDim.x) {
        float acc = 0.0f;
        for (long long n = r0; n < r1; n++) acc += ldx(inp + n * C + c);
        partial[(long long)r * C + c] = acc;
    }
}

// out (C) += Σ_r partial[r] (partial (R, C)): each column adds the partials onto out one at a time, in
// order of r (out + p0 + p1 + …, as the CPU engine adds its blocks' partials onto a gradient).
extern "C" __global__ void column_sum_finish(float* out, const float* partial, int R, int C) {
    const unsigned long long c = global_id();
    if (c >= (unsigned long long)C) return;
    float acc = out[c];
    for (int r = 0; r < R; r++) acc += partial[(long long)r * C + c];
    out[c] = acc;
}

// partial (R): partial[r] = Σ x² over the elements [r·⌈n/R⌉, (r+1)·⌈n/R⌉) ∩ [0, n) of x (n), accumulated
// in double (as the CPU engine's clip) and rounded once. A block per chunk.
extern "C" __global__ void norm_squared_partial(float* partial, const float* x, int n, int R) {
    __shared__ double shared[WARP];
    const int r = blockIdx.x;
    if (r >= R) return;
    const long long per = ((long long)n + R - 1) / R;
    const long long i0 = r * per, i1 = min((long long)n, i0 + per);
    double acc = 0.0;
    for (long long i = i0 + threadIdx.x; i < i1; i += blockDim.x) {
        const double v = x[i];
        acc += v * v;
    }
    acc = block_sum_f64(acc, shared);
    if (threadIdx.x == 0) partial[r] = (float)acc;
}

// x (n) *= s, in place.
extern "C" __global__ void scale_f32(float* x, int n, float s) {
    const unsigned long long i = global_id();
    if (i < (unsigned long long)n) x[i] *= s;
}

// out (n) = (floatX) inp (n).
extern "C" __global__ void cast_to_x(floatX* out, const float* inp, int n) {
    const unsigned long long i = global_id();
    if (i < (unsigned long long)n) stx(out + i, inp[i]);
}
