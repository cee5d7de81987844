// Token plus position embedding, forward and backward (cpu/encoder.rs).
#include "common.cuh"

// out (B, T, C) = wte[idx[b, t]] + wpe[t]; idx (B, T), wte (V, C), wpe (maxT, C). A thread per element.
extern "C" __global__ void encoder_forward(floatX* out, const unsigned int* idx, const floatX* wte,
                                           const floatX* wpe, int B, int T, int C) {
    const unsigned long long i = global_id();
    if (i >= (unsigned long long)B * T * C) return;
    const unsigned long long bt = i / C;
    const int c = (int)(i % C), t = (int)(bt % T);
    stx(out + i, ldx(wte + (unsigned long long)idx[bt] * C + c) + ldx(wpe + (unsigned long long)t * C + c));
}

// dwte (V, C) += Σ dout (B·T, C) over the positions of each token. The host sorts the positions by token
// into buckets: bucket k is token bucket_token[k] (nb), positions bucket_pos[bucket_start[k] ..
// bucket_start[k + 1]]. A block per bucket, threads over channels, each adding its bucket's positions
// in order onto dwte's value: the reference's order (cpu::encoder_backward visits b·t in order).
extern "C" __global__ void encoder_backward_wte(float* dwte, const floatX* dout, const unsigned int* bucket_start,
                                                const unsigned int* bucket_pos, const unsigned int* bucket_token,
                                                int nb, int C) {
    const int k = blockIdx.x;
    if (k >= nb) return;
    const unsigned int j0 = bucket_start[k], j1 = bucket_start[k + 1];
    float* d = dwte + (unsigned long long)bucket_token[k] * C;
    for (int c = threadIdx.x; c < C; c += blockDim.x) {
        float acc = d[c];
        for (unsigned int j = j0; j < j1; j++) acc += ldx(dout + (unsigned long long)bucket_pos[j] * C + c);
        d[c] = acc;
    }
}

// dwpe (maxT, C) += Σ_b dout[b, t] (dout (B, T, C)), in order of b. A thread per (t, c).
extern "C" __global__ void encoder_backward_wpe(float* dwpe, const floatX* dout, int B, int T, int C) {
    const unsigned long long i = global_id(), tc = (unsigned long long)T * C;
    if (i >= tc) return;
    float acc = dwpe[i];
    for (int b = 0; b < B; b++) acc += ldx(dout + b * tc + i);
    dwpe[i] = acc;
}
