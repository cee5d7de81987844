// The gate around the attention core of the gated variants (cpu/attention_gate.rs), forward and backward:
//   y'[n, c] = y[n, c] · σ(z[n, c / (C/G)])        y, y' (N, C); z (N, G), G = n_head or C
// A block per row n (kernel::geometry), so that the logits can be read by every channel before they are
// overwritten by σ in place.
#include "common.cuh"

// out (N, C) = y ⊙ σ(gate) broadcast over groups of C/G channels; gate (N, G) holds the logits z on entry
// and σ(z) (as floatX) on return. out uses σ rounded to floatX, the value backward reads.
extern "C" __global__ void gate_forward(floatX* out, floatX* gate, const floatX* y, int N, int C, int G) {
    const int n = blockIdx.x;
    if (n >= N) return;
    const int w = C / G;
    const unsigned long long oc = (unsigned long long)n * C, og = (unsigned long long)n * G;
    for (int c = threadIdx.x; c < C; c += blockDim.x) {
        const float s = roundx(sigmoidf(ldx(gate + og + c / w)));
        stx(out + oc + c, ldx(y + oc + c) * s);
    }
    __syncthreads();  // every logit read before any is replaced
    for (int k = threadIdx.x; k < G; k += blockDim.x) stx(gate + og + k, sigmoidf(ldx(gate + og + k)));
}

// dy (N, C) += dout ⊙ σ (broadcast); dz (N, G) = σ(1 − σ)·Σ_{c in group} dout·y (written), gate (N, G) = σ.
// The group's sum runs over its channels in order, as the reference.
extern "C" __global__ void gate_backward(floatX* dy, floatX* dz, const floatX* dout, const floatX* y,
                                         const floatX* gate, int N, int C, int G) {
    const int n = blockIdx.x;
    if (n >= N) return;
    const int w = C / G;
    const unsigned long long oc = (unsigned long long)n * C, og = (unsigned long long)n * G;
    for (int c = threadIdx.x; c < C; c += blockDim.x) {
        const float s = ldx(gate + og + c / w);
        stx(dy + oc + c, ldx(dy + oc + c) + ldx(dout + oc + c) * s);
    }
    for (int k = threadIdx.x; k < G; k += blockDim.x) {
        const float s = ldx(gate + og + k);
        float acc = 0.0f;
        for (int c = k * w; c < (k + 1) * w; c++) acc += ldx(dout + oc + c) * ldx(y + oc + c);
        stx(dz + og + k, acc * s * (1.0f - s));
    }
}
