// The emulator's stand-in for CUDA's cuda_bf16.h: __nv_bfloat16 as its 16 bits, conversions rounding to
// nearest even (NaN to the canonical quiet NaN), as the device's __float2bfloat16_rn.
#pragma once
struct __nv_bfloat16 { uint16_t x; };
inline float __bfloat162float(__nv_bfloat16 b) { uint32_t u = (uint32_t)b.x << 16; float f; memcpy(&f, &u, 4); return f; }
inline __nv_bfloat16 __float2bfloat16_rn(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    if ((u & 0x7fffffff) > 0x7f800000) return {0x7fc0};
    u += 0x7fff + ((u >> 16) & 1);
    return {(uint16_t)(u >> 16)};
}
