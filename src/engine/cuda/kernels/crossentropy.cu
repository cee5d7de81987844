// Softmax cross-entropy over the vocabulary (cpu/crossentropy.rs), forward and backward: with
// lse = m + ln Σ e^{x − m} (m the row's maximum; the log taken in double, as the reference),
//   loss_n = lse − x[target],   dlogits = (e^{x − lse} − onehot(target))·dloss
// A block per row n (kernel::geometry), V any length (50257 or 50304 alike): threads stride over the row,
// one block reduction for the maximum and one for the sum.
#include "common.cuh"

// lse of the row x (V); every thread of the block must call it.
__device__ __forceinline__ float row_lse(const floatX* x, int V) {
    __shared__ float shared[WARP];
    float m = NEG_INF;
    for (int j = threadIdx.x; j < V; j += blockDim.x) m = fmaxf(m, ldx(x + j));
    m = block_max(m, shared);
    float s = 0.0f;
    for (int j = threadIdx.x; j < V; j += blockDim.x) s += expf(ldx(x + j) - m);
    s = block_sum(s, shared);
    return m + (float)log((double)s);
}

// losses (N) from logits (N, V) and targets (N).
extern "C" __global__ void crossentropy_forward(float* losses, const floatX* logits, const unsigned int* targets,
                                                int N, int V) {
    const int n = blockIdx.x;
    if (n >= N) return;
    const floatX* x = logits + (unsigned long long)n * V;
    const float lse = row_lse(x, V);
    if (threadIdx.x == 0) losses[n] = lse - ldx(x + targets[n]);
}

// dlogits (N, V) = ∂L/∂logits, in place over the logits; dloss = ∂L/∂loss_n (1/N for the mean).
extern "C" __global__ void crossentropy_backward(floatX* dlogits, const unsigned int* targets, float dloss, int N,
                                                 int V) {
    const int n = blockIdx.x;
    if (n >= N) return;
    floatX* x = dlogits + (unsigned long long)n * V;
    const float lse = row_lse(x, V);  // every thread has read the whole row (the reductions synchronise)
    const int target = (int)targets[n];
    for (int j = threadIdx.x; j < V; j += blockDim.x) {
        float d = expf(ldx(x + j) - lse) * dloss;
        if (j == target) d -= dloss;
        stx(x + j, d);
    }
}
