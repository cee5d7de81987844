// Attention, stage 1 (materialised; cpu/attention.rs and cpu/attention_rows.rs): the permutes between
// qkv (B, T, 3C) and the heads (B, NH, T, HS) around the batched GEMMs, the row normaliser of each variant
// (forward and backward side by side), and the sink logits' gradient.
//
// Row kernels: one warp per row of scores (kernel::geometry: BH·T rows, blockDim/32 per block); lanes
// stride over the row by 32, so a row may be as long as T. Row i of head bh reads its scores s_j =
// preatt[bh, i, j], j ≤ i (scaled by 1/√hs already), and writes weights for j ≤ i and exact zeros for
// j > i. Every pass re-reads the row (L1) rather than holding it. With g = ∂L/∂p (datt) and D = Σ p·g:
//   softmax  p = e^{s−m}/Σe^{s−m}                                      ds = p (g − D)
//   quiet    m = max(0, max s), Σ starts at e^{−m} (softmax1)          ds = p (g − D), dnull = −p_null·D
//   sink     the same with the learned σ_h in place of 0               ds = p (g − D), dnull = −p_null·D
//   clipped  p = clip((ζ−γ)·u + γ, 0, 1), u = softmax(s)               from the scores: g' = (ζ−γ)g inside
//                                                                      the clip, else 0; ds = u (g' − Σu·g')
//   relu     p = max(s, 0)/(i + 1)                                     ds = g/(i + 1) where p > 0, else 0
//   sigmoid  p = 1/(1 + e^{−s})                                        ds = g (1 − p) p
//   softpick m = max(0, max s), e0 = e^{−m}, z = Σ|e^{s−m} − e0| + ε·e0, p = max(e^{s−m} − e0, 0)/z;
//            w = sign(s)·e^{s−m}/z from the scores                     ds = max(w, 0)·g − w·D
// p_null = 1 − Σp, the null key's weight (in the bf16 build recomputed from the scores instead: 1 − Σp of
// rounded weights would lose it to cancellation). dnull (BH·T) gets each row's ∂L/∂(null logit) when it
// is not null (0 for the rules without a null key). In place is allowed: att may be preatt, dpreatt may
// be datt or preatt (each lane reads an element before it writes it, after every reduction).
#include "common.cuh"

#define SOFTPICK_EPS 1e-8f

enum Rule { SOFTMAX, QUIET, SINK, CLIPPED, RELU, SIGMOID, SOFTPICK };

// ------------------------------------------------------------------------------------------- permutes

// q, k, v (B, NH, T, HS) from qkv (B, T, 3C), C = NH·HS. A thread per element of q.
extern "C" __global__ void attention_permute(floatX* q, floatX* k, floatX* v, const floatX* qkv, int B, int T,
                                             int NH, int HS) {
    const unsigned long long i = global_id();
    if (i >= (unsigned long long)B * NH * T * HS) return;
    const int d = (int)(i % HS), t = (int)(i / HS % T), h = (int)(i / HS / T % NH);
    const unsigned long long b = i / HS / T / NH, C = (unsigned long long)NH * HS;
    const floatX* src = qkv + (b * T + t) * 3 * C + h * HS + d;
    q[i] = src[0];
    k[i] = src[C];
    v[i] = src[2 * C];
}

// dqkv (B, T, 3C) = the gradients dq, dk, dv (B, NH, T, HS) put back (written, not added).
extern "C" __global__ void attention_permute_backward(floatX* dqkv, const floatX* dq, const floatX* dk,
                                                      const floatX* dv, int B, int T, int NH, int HS) {
    const unsigned long long i = global_id();
    if (i >= (unsigned long long)B * NH * T * HS) return;
    const int d = (int)(i % HS), t = (int)(i / HS % T), h = (int)(i / HS / T % NH);
    const unsigned long long b = i / HS / T / NH, C = (unsigned long long)NH * HS;
    floatX* dst = dqkv + (b * T + t) * 3 * C + h * HS + d;
    dst[0] = dq[i];
    dst[C] = dk[i];
    dst[2 * C] = dv[i];
}

// out (B, T, C) from y (B, NH, T, HS): the heads side by side. A thread per element.
extern "C" __global__ void attention_unpermute(floatX* out, const floatX* y, int B, int T, int NH, int HS) {
    const unsigned long long i = global_id();
    if (i >= (unsigned long long)B * NH * T * HS) return;
    const int d = (int)(i % HS), t = (int)(i / HS % T), h = (int)(i / HS / T % NH);
    const unsigned long long b = i / HS / T / NH;
    out[(b * T + t) * NH * HS + h * HS + d] = y[i];
}

// dy (B, NH, T, HS) from dout (B, T, C) (written).
extern "C" __global__ void attention_unpermute_backward(floatX* dy, const floatX* dout, int B, int T, int NH,
                                                        int HS) {
    const unsigned long long i = global_id();
    if (i >= (unsigned long long)B * NH * T * HS) return;
    const int d = (int)(i % HS), t = (int)(i / HS % T), h = (int)(i / HS / T % NH);
    const unsigned long long b = i / HS / T / NH;
    dy[i] = dout[(b * T + t) * NH * HS + h * HS + d];
}

// ------------------------------------------------------------------------------ row rules, shared parts

// max over the visible scores s[0, n), starting from `from`.
__device__ __forceinline__ float row_max(const floatX* s, int n, float from) {
    float m = from;
    for (int j = lane_id(); j < n; j += WARP) m = fmaxf(m, ldx(s + j));
    return warp_max(m);
}

// Σ e^{s_j − m} over the visible scores.
__device__ __forceinline__ float row_sum_exp(const floatX* s, int n, float m) {
    float z = 0.0f;
    for (int j = lane_id(); j < n; j += WARP) z += expf(ldx(s + j) - m);
    return warp_sum(z);
}

// Σ a_j·b_j over the visible entries.
__device__ __forceinline__ float row_dot(const floatX* a, const floatX* b, int n) {
    float d = 0.0f;
    for (int j = lane_id(); j < n; j += WARP) d += ldx(a + j) * ldx(b + j);
    return warp_sum(d);
}

// softpick's (m, e0, 1/z) from the visible scores (the forward's arithmetic, so the same bits in backward).
__device__ __forceinline__ float3 softpick_norm(const floatX* s, int n) {
    const float m = row_max(s, n, 0.0f), e0 = expf(-m);
    float z = lane_id() == 0 ? SOFTPICK_EPS * e0 : 0.0f;
    for (int j = lane_id(); j < n; j += WARP) z += fabsf(expf(ldx(s + j) - m) - e0);
    return make_float3(m, e0, 1.0f / warp_sum(z));
}

// clip(a·u + γ, 0, 1)
__device__ __forceinline__ float clip_weight(float a, float gamma, float u) {
    const float w = a * u + gamma;
    return w > 1.0f ? 1.0f : (w > 0.0f ? w : 0.0f);
}

// The row of this warp: (row index over BH·T, query i, head h); false past the last row.
__device__ __forceinline__ bool attn_row(int BH, int T, int NH, unsigned long long* row, int* i, int* h) {
    *row = warp_row();
    if (*row >= (unsigned long long)BH * T) return false;
    *i = (int)(*row % T);
    *h = (int)(*row / T % NH);
    return true;
}

// ---------------------------------------------------------------------------------------------- forward

// att (BH, T, T) from preatt (BH, T, T); sink (NH) for SINK only.
template <int RULE>
__device__ __forceinline__ void row_forward(floatX* att, const floatX* preatt, const floatX* sink, int BH, int T,
                                            int NH, float zeta, float gamma) {
    unsigned long long row;
    int i, h;
    if (!attn_row(BH, T, NH, &row, &i, &h)) return;
    const int n = i + 1, lane = lane_id();
    const floatX* s = preatt + row * T;
    floatX* p = att + row * T;
    if constexpr (RULE == RELU) {
        const float fn = (float)n;
        for (int j = lane; j < n; j += WARP) stx(p + j, fmaxf(ldx(s + j), 0.0f) / fn);
    } else if constexpr (RULE == SIGMOID) {
        for (int j = lane; j < n; j += WARP) stx(p + j, sigmoidf(ldx(s + j)));
    } else if constexpr (RULE == SOFTPICK) {
        const float3 k = softpick_norm(s, n);
        for (int j = lane; j < n; j += WARP) stx(p + j, fmaxf(expf(ldx(s + j) - k.x) - k.y, 0.0f) * k.z);
    } else {
        float m = row_max(s, n, NEG_INF), null_e = 0.0f;
        if constexpr (RULE == QUIET || RULE == SINK) {
            const float nl = RULE == QUIET ? 0.0f : ldx(sink + h);
            m = fmaxf(m, nl);
            null_e = expf(nl - m);
        }
        const float inv = 1.0f / (row_sum_exp(s, n, m) + null_e);
        const float a = zeta - gamma;
        for (int j = lane; j < n; j += WARP) {
            float u = expf(ldx(s + j) - m) * inv;
            if constexpr (RULE == CLIPPED) u = clip_weight(a, gamma, u);
            stx(p + j, u);
        }
    }
    for (int j = n + lane; j < T; j += WARP) stx(p + j, 0.0f);
}

// --------------------------------------------------------------------------------------------- backward

// dpreatt (BH, T, T) = ∂L/∂scores from datt = ∂L/∂att, att and (clipped, softpick, and the bf16 build's
// p_null) preatt; dnull (BH·T) as described above when not null.
template <int RULE>
__device__ __forceinline__ void row_backward(floatX* dpreatt, float* dnull, const floatX* datt, const floatX* att,
                                             const floatX* preatt, const floatX* sink, int BH, int T, int NH,
                                             float zeta, float gamma) {
    unsigned long long row;
    int i, h;
    if (!attn_row(BH, T, NH, &row, &i, &h)) return;
    const int n = i + 1, lane = lane_id();
    const floatX *g = datt + row * T, *p = att + row * T, *s = preatt + row * T;
    floatX* ds = dpreatt + row * T;
    float dn = 0.0f;
    if constexpr (RULE == RELU) {
        const float fn = (float)n;
        for (int j = lane; j < n; j += WARP) {
            const float gj = ldx(g + j), pj = ldx(p + j);
            stx(ds + j, pj > 0.0f ? gj / fn : 0.0f);
        }
    } else if constexpr (RULE == SIGMOID) {
        for (int j = lane; j < n; j += WARP) {
            const float gj = ldx(g + j), pj = ldx(p + j);
            stx(ds + j, gj * (1.0f - pj) * pj);
        }
    } else if constexpr (RULE == SOFTPICK) {
        const float3 k = softpick_norm(s, n);
        const float d = row_dot(p, g, n);
        for (int j = lane; j < n; j += WARP) {
            const float sj = ldx(s + j), gj = ldx(g + j);
            const float e = expf(sj - k.x) * k.z;
            const float w = sj > 0.0f ? e : (sj < 0.0f ? -e : 0.0f);
            stx(ds + j, fmaxf(w, 0.0f) * gj - w * d);
        }
    } else if constexpr (RULE == CLIPPED) {
        const float a = zeta - gamma;
        const float m = row_max(s, n, NEG_INF);
        const float inv = 1.0f / row_sum_exp(s, n, m);
        float d = 0.0f;  // Σ u·g', g' the clip's part of the gradient
        for (int j = lane; j < n; j += WARP) {
            const float u = expf(ldx(s + j) - m) * inv, w = a * u + gamma;
            d += u * (w > 0.0f && w < 1.0f ? a * ldx(g + j) : 0.0f);
        }
        d = warp_sum(d);
        for (int j = lane; j < n; j += WARP) {
            const float gj = ldx(g + j), u = expf(ldx(s + j) - m) * inv, w = a * u + gamma;
            stx(ds + j, u * ((w > 0.0f && w < 1.0f ? a * gj : 0.0f) - d));
        }
    } else {
        const float d = row_dot(p, g, n);
        if constexpr (RULE == QUIET || RULE == SINK) {
            if (dnull != nullptr) {
#ifdef QG_BF16
                const float nl = RULE == QUIET ? 0.0f : ldx(sink + h);
                const float m = fmaxf(row_max(s, n, NEG_INF), nl), e = expf(nl - m);
                const float p_null = e / (row_sum_exp(s, n, m) + e);
#else
                float ps = 0.0f;
                for (int j = lane; j < n; j += WARP) ps += ldx(p + j);
                const float p_null = 1.0f - warp_sum(ps);
#endif
                dn = -p_null * d;
            }
        }
        for (int j = lane; j < n; j += WARP) {
            const float gj = ldx(g + j), pj = ldx(p + j);
            stx(ds + j, pj * (gj - d));
        }
    }
    for (int j = n + lane; j < T; j += WARP) stx(ds + j, 0.0f);
    if (dnull != nullptr && lane == 0) dnull[row] = dn;
}

// ------------------------------------------------------------------------------------- the entry points

// Written out (no macro) so that every signature can be read and checked (tests/cuda_compile.rs).

extern "C" __global__ void attn_softmax_forward(floatX* att, const floatX* preatt, const floatX* sink, int BH, int T,
                                          int NH, float zeta, float gamma) {
    row_forward<SOFTMAX>(att, preatt, sink, BH, T, NH, zeta, gamma);
}
extern "C" __global__ void attn_softmax_backward(floatX* dpreatt, float* dnull, const floatX* datt, const floatX* att,
                                           const floatX* preatt, const floatX* sink, int BH, int T, int NH,
                                           float zeta, float gamma) {
    row_backward<SOFTMAX>(dpreatt, dnull, datt, att, preatt, sink, BH, T, NH, zeta, gamma);
}

extern "C" __global__ void attn_quiet_forward(floatX* att, const floatX* preatt, const floatX* sink, int BH, int T,
                                          int NH, float zeta, float gamma) {
    row_forward<QUIET>(att, preatt, sink, BH, T, NH, zeta, gamma);
}
extern "C" __global__ void attn_quiet_backward(floatX* dpreatt, float* dnull, const floatX* datt, const floatX* att,
                                           const floatX* preatt, const floatX* sink, int BH, int T, int NH,
                                           float zeta, float gamma) {
    row_backward<QUIET>(dpreatt, dnull, datt, att, preatt, sink, BH, T, NH, zeta, gamma);
}

extern "C" __global__ void attn_sink_forward(floatX* att, const floatX* preatt, const floatX* sink, int BH, int T,
                                          int NH, float zeta, float gamma) {
    row_forward<SINK>(att, preatt, sink, BH, T, NH, zeta, gamma);
}
extern "C" __global__ void attn_sink_backward(floatX* dpreatt, float* dnull, const floatX* datt, const floatX* att,
                                           const floatX* preatt, const floatX* sink, int BH, int T, int NH,
                                           float zeta, float gamma) {
    row_backward<SINK>(dpreatt, dnull, datt, att, preatt, sink, BH, T, NH, zeta, gamma);
}

extern "C" __global__ void attn_clipped_forward(floatX* att, const floatX* preatt, const floatX* sink, int BH, int T,
                                          int NH, float zeta, float gamma) {
    row_forward<CLIPPED>(att, preatt, sink, BH, T, NH, zeta, gamma);
}
extern "C" __global__ void attn_clipped_backward(floatX* dpreatt, float* dnull, const floatX* datt, const floatX* att,
                                           const floatX* preatt, const floatX* sink, int BH, int T, int NH,
                                           float zeta, float gamma) {
    row_backward<CLIPPED>(dpreatt, dnull, datt, att, preatt, sink, BH, T, NH, zeta, gamma);
}

extern "C" __global__ void attn_relu_forward(floatX* att, const floatX* preatt, const floatX* sink, int BH, int T,
                                          int NH, float zeta, float gamma) {
    row_forward<RELU>(att, preatt, sink, BH, T, NH, zeta, gamma);
}
extern "C" __global__ void attn_relu_backward(floatX* dpreatt, float* dnull, const floatX* datt, const floatX* att,
                                           const floatX* preatt, const floatX* sink, int BH, int T, int NH,
                                           float zeta, float gamma) {
    row_backward<RELU>(dpreatt, dnull, datt, att, preatt, sink, BH, T, NH, zeta, gamma);
}

extern "C" __global__ void attn_sigmoid_forward(floatX* att, const floatX* preatt, const floatX* sink, int BH, int T,
                                          int NH, float zeta, float gamma) {
    row_forward<SIGMOID>(att, preatt, sink, BH, T, NH, zeta, gamma);
}
extern "C" __global__ void attn_sigmoid_backward(floatX* dpreatt, float* dnull, const floatX* datt, const floatX* att,
                                           const floatX* preatt, const floatX* sink, int BH, int T, int NH,
                                           float zeta, float gamma) {
    row_backward<SIGMOID>(dpreatt, dnull, datt, att, preatt, sink, BH, T, NH, zeta, gamma);
}

extern "C" __global__ void attn_softpick_forward(floatX* att, const floatX* preatt, const floatX* sink, int BH, int T,
                                          int NH, float zeta, float gamma) {
    row_forward<SOFTPICK>(att, preatt, sink, BH, T, NH, zeta, gamma);
}
extern "C" __global__ void attn_softpick_backward(floatX* dpreatt, float* dnull, const floatX* datt, const floatX* att,
                                           const floatX* preatt, const floatX* sink, int BH, int T, int NH,
                                           float zeta, float gamma) {
    row_backward<SOFTPICK>(dpreatt, dnull, datt, att, preatt, sink, BH, T, NH, zeta, gamma);
}

// ------------------------------------------------------------------------------------------- sink logits

// dsink (NH) += Σ_b Σ_i dnull[b, h, i] (dnull (B, NH, T), the row kernels' per-row parts). A block per
// head (kernel::geometry), one block reduction in a fixed order.
extern "C" __global__ void sink_backward(float* dsink, const float* dnull, int B, int NH, int T) {
    __shared__ float shared[WARP];
    const int h = blockIdx.x;
    if (h >= NH) return;
    float acc = 0.0f;
    for (long long k = threadIdx.x; k < (long long)B * T; k += blockDim.x) {
        const long long b = k / T, i = k % T;
        acc += dnull[(b * NH + h) * T + i];
    }
    acc = block_sum(acc, shared);
    if (threadIdx.x == 0) dsink[h] += acc;
}
