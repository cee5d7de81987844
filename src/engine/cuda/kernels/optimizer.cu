// The optimizers' elementwise updates over the flat f32 master parameters (cpu/adamw.rs `adamw_chunk`,
// cpu/sgd.rs `sgd_chunk`): the same operations in the same order, so that the f32 build (no contraction)
// gives the reference's bits. The host forms the per-tensor constants as the CPU engine does; params_x,
// when not null, receives the updated parameters as floatX (the copy the GEMMs read).
#include "common.cuh"

// AdamW, per element (torch's single-tensor AdamW):
//   p *= decay;  m += (g − m)·(1 − β1);  v = v·β2 + (1 − β2)·g·g
//   p += −step_size · (m / (√v / √(1 − β2ᵗ) + eps))
extern "C" __global__ void adamw_update(float* params, floatX* params_x, const float* grads, float* m, float* v,
                                        int n, float decay, float b1_rest, float b2, float b2_rest, float bc2_sqrt,
                                        float eps, float step_size) {
    const unsigned long long i = global_id();
    if (i >= (unsigned long long)n) return;
    const float g = grads[i];
    float p = params[i] * decay;
    const float mi = m[i] + (g - m[i]) * b1_rest;
    const float vi = v[i] * b2 + b2_rest * g * g;
    const float denom = sqrtf(vi) / bc2_sqrt + eps;
    p += -step_size * (mi / denom);
    m[i] = mi;
    v[i] = vi;
    params[i] = p;
    if (params_x != nullptr) stx(params_x + i, p);
}

// SGD with momentum (torch's, dampening 0, no Nesterov), decay and first are 0/1:
//   g' = decay ? fma(p, wd, g) : g;  buf = first ? g' : buf·momentum + g';  p = fma(buf, −lr, p)
extern "C" __global__ void sgd_update(float* params, floatX* params_x, const float* grads, float* buf, int n,
                                      int decay, float wd, float momentum, float neg_lr, int first) {
    const unsigned long long i = global_id();
    if (i >= (unsigned long long)n) return;
    const float g = decay ? fmaf(params[i], wd, grads[i]) : grads[i];
    const float b = first ? g : buf[i] * momentum + g;
    const float p = fmaf(b, neg_lr, params[i]);
    buf[i] = b;
    params[i] = p;
    if (params_x != nullptr) stx(params_x + i, p);
}
