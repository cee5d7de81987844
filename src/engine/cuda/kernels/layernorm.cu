// LayerNorm over the last dimension, forward (plain and fused with the residual add) and backward
// (cpu/layernorm.rs): y = (x − μ)·rstd·w (+ b), rstd = 1/√(σ² + eps), σ² the population variance, eps 1e-5.
// A warp per row (kernel::geometry: N rows, blockDim/32 rows per block); each lane takes the channels
// c ≡ lane (mod 32), re-read from memory (L1) in each pass rather than held.
#include "common.cuh"

#define LN_EPS 1e-5f

// The statistics of the row x (C): (mean, rstd) by the reference's two passes, m = Σx·(1/C),
// σ² = Σ(x − m)²·(1/C).
__device__ __forceinline__ float2 row_stats(const floatX* x, int C) {
    const int lane = lane_id();
    const float inv_c = 1.0f / (float)C;
    float s = 0.0f;
    for (int c = lane; c < C; c += WARP) s += ldx(x + c);
    const float m = warp_sum(s) * inv_c;
    float v = 0.0f;
    for (int c = lane; c < C; c += WARP) {
        const float d = ldx(x + c) - m;
        v += d * d;
    }
    const float var = warp_sum(v) * inv_c;
    return make_float2(m, 1.0f / sqrtf(var + LN_EPS));
}

// out (C) = (x − m)·r·w (+ b) for one row; the statistics to mean[row], rstd[row].
__device__ __forceinline__ void row_normalize(floatX* out, float* mean, float* rstd, const floatX* x,
                                              const floatX* w, const floatX* b, unsigned long long row, int C) {
    const float2 st = row_stats(x, C);
    const float m = st.x, r = st.y;
    for (int c = lane_id(); c < C; c += WARP) {
        float o = (ldx(x + c) - m) * r * ldx(w + c);
        if (b != nullptr) o += ldx(b + c);
        stx(out + c, o);
    }
    if (lane_id() == 0) {
        mean[row] = m;
        rstd[row] = r;
    }
}

// out (N, C), mean (N), rstd (N) from inp (N, C), w (C), b (C, may be null).
extern "C" __global__ void layernorm_forward(floatX* out, float* mean, float* rstd, const floatX* inp,
                                             const floatX* w, const floatX* b, int N, int C) {
    const unsigned long long row = warp_row();
    if (row >= (unsigned long long)N) return;
    const unsigned long long o = row * C;
    row_normalize(out + o, mean, rstd, inp + o, w, b, row, C);
}

// res (N, C) = inp1 + inp2 (rounded to floatX), then out, mean, rstd = LayerNorm(res) as layernorm_forward.
// res may be inp1 or inp2 (each lane reads an element before it writes it).
extern "C" __global__ void residual_layernorm_forward(floatX* res, floatX* out, float* mean, float* rstd,
                                                      const floatX* inp1, const floatX* inp2, const floatX* w,
                                                      const floatX* b, int N, int C) {
    const unsigned long long row = warp_row();
    if (row >= (unsigned long long)N) return;
    const unsigned long long o = row * C;
    for (int c = lane_id(); c < C; c += WARP) stx(res + o + c, ldx(inp1 + o + c) + ldx(inp2 + o + c));
    __syncwarp();
    row_normalize(out + o, mean, rstd, res + o, w, b, row, C);
}

// Backward, g = dout: with n̂ = (x − μ)·rstd,
//   dinp (N, C) += rstd·(g·w − mean(g·w) − n̂·mean(g·w·n̂))
//   dw_rows (N, C) = g·n̂   (the weight's gradient per row; ColumnSumPartial/Finish sum it over rows, and
//                           sum dout itself for the bias)
// mean(g·w·n̂) = Σ g·w·(x − μ) · rstd / C, as the reference. dw_rows may be dout.
extern "C" __global__ void layernorm_backward(floatX* dinp, floatX* dw_rows, const floatX* dout, const floatX* inp,
                                              const floatX* w, const float* mean, const float* rstd, int N, int C) {
    const unsigned long long row = warp_row();
    if (row >= (unsigned long long)N) return;
    const unsigned long long o = row * C;
    const floatX *x = inp + o, *g = dout + o;
    const float m = mean[row], s = rstd[row], inv_c = 1.0f / (float)C;
    float gw = 0.0f, gwx = 0.0f;
    for (int c = lane_id(); c < C; c += WARP) {
        const float gwc = ldx(g + c) * ldx(w + c);
        gw += gwc;
        gwx += gwc * (ldx(x + c) - m);
    }
    const float g_mean = warp_sum(gw) * inv_c;
    const float gn_mean = warp_sum(gwx) * s * inv_c;
    for (int c = lane_id(); c < C; c += WARP) {
        const float gc = ldx(g + c), norm = (ldx(x + c) - m) * s;
        stx(dinp + o + c, ldx(dinp + o + c) + s * (gc * ldx(w + c) - g_mean - norm * gn_mean));
        stx(dw_rows + o + c, norm * gc);
    }
}
