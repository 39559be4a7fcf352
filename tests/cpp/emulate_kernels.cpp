// Builds a generated <name>.cu as a CPU shared library (g++ -std=c++20 -shared -fPIC -pthread) on top of
// cuda_emulation.h, so the CUDA kernels themselves (thread mapping, barriers, shared memory) run in tests on a
// machine without a GPU:
//   g++ ... -I<generated> -DCARTINV_KERNELS='"<name>.cu"' -DCARTINV_NS=<namespace> emulate_kernels.cpp
// Exports emulate_<kernel>_<f32|f64>(grid.x, grid.y, block.x, block.y, shared_bytes, kernel arguments...),
// returning cartinv_emulate_launch's status (0 = ok).
#include "cuda_emulation.h"

#include CARTINV_KERNELS

namespace cartinv {
namespace CARTINV_NS {
namespace kernels {
// The definition behind the kernels' `extern __shared__ unsigned char shared_memory[]` declarations.
alignas(16) unsigned char shared_memory[CARTINV_EMULATED_SHARED_BYTES];
}  // namespace kernels
}  // namespace CARTINV_NS
}  // namespace cartinv

#define CARTINV_JOIN2(a, b) a##b
#define CARTINV_JOIN(a, b) CARTINV_JOIN2(a, b)
#define CARTINV_SYMBOL(suffix) CARTINV_JOIN(CARTINV_NS, suffix)

#define CARTINV_EMULATE(sfx, scalar)                                                                           \
    extern "C" int emulate_forward_##sfx(unsigned gx, unsigned gy, unsigned bx, unsigned by,                   \
                                         unsigned long long shared_bytes, const scalar* r, const scalar* w,    \
                                         const long long* order, const long long* offsets, long long n_atoms,  \
                                         int groups, int store_moments, scalar* moments, scalar* out)          \
    {                                                                                                          \
        return cartinv_emulate_launch(dim3(gx, gy), dim3(bx, by), shared_bytes,                                \
                                      cartinv::CARTINV_NS::kernels::shared_memory, [=] {                       \
                                          CARTINV_SYMBOL(_forward_##sfx)(r, w, order, offsets, n_atoms, groups, \
                                                                         store_moments, moments, out);         \
                                      });                                                                      \
    }                                                                                                          \
    extern "C" int emulate_invariants_backward_##sfx(unsigned gx, unsigned gy, unsigned bx, unsigned by,       \
                                                     unsigned long long shared_bytes, const scalar* moments,   \
                                                     const scalar* grad_out, long long rows,                   \
                                                     scalar* grad_moments)                                     \
    {                                                                                                          \
        return cartinv_emulate_launch(dim3(gx, gy), dim3(bx, by), shared_bytes,                                \
                                      cartinv::CARTINV_NS::kernels::shared_memory, [=] {                       \
                                          CARTINV_SYMBOL(_invariants_backward_##sfx)(moments, grad_out, rows,  \
                                                                                     grad_moments);            \
                                      });                                                                      \
    }                                                                                                          \
    extern "C" int emulate_pairs_backward_##sfx(unsigned gx, unsigned gy, unsigned bx, unsigned by,            \
                                                unsigned long long shared_bytes, const scalar* r,              \
                                                const scalar* w, const long long* order,                       \
                                                const long long* centers, const scalar* grad_moments,          \
                                                long long n_pairs, int groups, scalar* grad_r, scalar* grad_w) \
    {                                                                                                          \
        return cartinv_emulate_launch(dim3(gx, gy), dim3(bx, by), shared_bytes,                                \
                                      cartinv::CARTINV_NS::kernels::shared_memory, [=] {                       \
                                          CARTINV_SYMBOL(_pairs_backward_##sfx)(r, w, order, centers,          \
                                                                                grad_moments, n_pairs, groups, \
                                                                                grad_r, grad_w);               \
                                      });                                                                      \
    }

CARTINV_EMULATE(f32, float)
CARTINV_EMULATE(f64, double)
