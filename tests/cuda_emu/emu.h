// Host emulation of the CUDA subset the kernels use, for checking them against the CPU reference on a
// machine with no GPU. Each thread of a block is a fiber (ucontext); the block's fibers run one at a time
// until each reaches a barrier (__syncthreads, or a warp's __syncwarp / shuffle), which releases when
// every live thread of its scope has arrived; blocks run one after another. It checks index arithmetic,
// reductions, masking and the formulas, not the GPU's memory system or its math library's last bits.
#pragma once
#include <math.h>
#include <stdint.h>
#include <string.h>
#include <stdio.h>
#include <stdlib.h>
#include <ucontext.h>
#include <algorithm>
#include <string>
#include <utility>
#include <vector>
using std::max;
using std::min;

struct dim3 { unsigned x = 1, y = 1, z = 1; };
inline dim3 threadIdx, blockIdx, blockDim, gridDim;
#define __global__
#define __device__
#define __forceinline__ inline
#define __shared__ static
struct float2 { float x, y; };
struct float3 { float x, y, z; };
inline float2 make_float2(float a, float b) { return {a, b}; }
inline float3 make_float3(float a, float b, float c) { return {a, b, c}; }
inline float __int_as_float(int i) { float f; memcpy(&f, &i, 4); return f; }

enum { RUN, AT_BLOCK, AT_WARP, DONE };
struct Fiber { ucontext_t ctx; int state; std::vector<char> stack; };
inline std::vector<Fiber> g_fibers;
inline ucontext_t g_sched;
inline unsigned g_cur;
inline uint64_t g_slot[1024];

inline void emu_yield(int state) {
    g_fibers[g_cur].state = state;
    swapcontext(&g_fibers[g_cur].ctx, &g_sched);
    threadIdx = {g_cur, 1, 1};
}
inline void __syncthreads() { emu_yield(AT_BLOCK); }
inline void __syncwarp() { emu_yield(AT_WARP); }
template <class T> T __shfl_xor_sync(unsigned, T v, int o) {
    uint64_t u = 0;
    memcpy(&u, &v, sizeof(T));
    const unsigned t = threadIdx.x;
    g_slot[t] = u;
    emu_yield(AT_WARP);
    u = g_slot[(t & ~31u) | ((t & 31u) ^ (unsigned)o)];
    emu_yield(AT_WARP);
    T r;
    memcpy(&r, &u, sizeof(T));
    return r;
}

inline void (*g_body)();
inline void emu_fiber_main() {
    g_body();
    g_fibers[g_cur].state = DONE;
    swapcontext(&g_fibers[g_cur].ctx, &g_sched);
}

// Runs body() as every thread of every block of a 1-D grid.
inline void emu_run(void (*body)(), unsigned grid, unsigned block) {
    gridDim = {grid, 1, 1};
    blockDim = {block, 1, 1};
    g_body = body;
    g_fibers.resize(block);
    for (auto& f : g_fibers) f.stack.resize(256 * 1024);
    for (unsigned b = 0; b < grid; b++) {
        blockIdx = {b, 1, 1};
        for (unsigned t = 0; t < block; t++) {
            Fiber& f = g_fibers[t];
            getcontext(&f.ctx);
            f.ctx.uc_stack.ss_sp = f.stack.data();
            f.ctx.uc_stack.ss_size = f.stack.size();
            f.ctx.uc_link = nullptr;
            makecontext(&f.ctx, emu_fiber_main, 0);
            f.state = RUN;
        }
        for (;;) {
            bool ran = false, live = false;
            for (unsigned t = 0; t < block; t++) {
                if (g_fibers[t].state != RUN) continue;
                g_cur = t;
                threadIdx = {t, 1, 1};
                swapcontext(&g_sched, &g_fibers[t].ctx);
                ran = true;
            }
            // release the barriers every live thread of their scope has reached
            bool released = false, block_all = true;
            for (unsigned w = 0; w < block; w += 32) {
                bool all = true, any = false;
                for (unsigned t = w; t < w + 32; t++) {
                    int s = g_fibers[t].state;
                    if (s != DONE) live = true;
                    if (s == AT_WARP) any = true;
                    else if (s != DONE) all = false;
                    if (s != AT_BLOCK && s != DONE) block_all = false;
                }
                if (any && all) {
                    for (unsigned t = w; t < w + 32; t++)
                        if (g_fibers[t].state == AT_WARP) g_fibers[t].state = RUN;
                    released = true;
                }
            }
            if (!live) break;
            if (block_all) {
                for (auto& f : g_fibers)
                    if (f.state == AT_BLOCK) f.state = RUN;
                released = true;
            }
            if (!ran && !released) {
                fprintf(stderr, "emu: deadlock in block %u (threads at different barriers)\n", b);
                abort();
            }
        }
    }
}

inline void** g_args;
template <class... A, size_t... I> void emu_call(void (*k)(A...), std::index_sequence<I...>) {
    k(*static_cast<A*>(g_args[I])...);
}
template <class... A> void emu_invoke(void (*k)(A...)) { emu_call(k, std::index_sequence_for<A...>{}); }
#define EMU_BEGIN extern "C" int emu_launch(const char* name, void** args, unsigned grid, unsigned block) { \
    std::string n(name); g_args = args;
#define EMU_ENTRY(k) if (n == #k) { emu_run([] { emu_invoke(k); }, grid, block); return 0; }
#define EMU_END return 1; }
