// cartinv's basis-independent C++ / CUDA preamble, included by every generated <name>.h: the function
// qualifiers (host and device under nvcc / NVRTC, plain inline otherwise) and the square root both targets use.
// Hand-written and shared by every basis; `cartinv export --target c|cuda` copies it next to the header.
#ifndef CARTINV_CORE_H
#define CARTINV_CORE_H

#ifndef CARTINV_HD
#if defined(__CUDACC__) || defined(__CUDACC_RTC__)
#define CARTINV_HD __host__ __device__ inline
#define CARTINV_UNROLL _Pragma("unroll")
#else
#define CARTINV_HD inline
#define CARTINV_UNROLL
#endif
#endif

#if !defined(__CUDACC_RTC__)
#include <cmath>
#endif

namespace cartinv {
#if defined(__CUDACC__) || defined(__CUDACC_RTC__)
CARTINV_HD float cartinv_sqrt(float x) { return sqrtf(x); }
CARTINV_HD double cartinv_sqrt(double x) { return sqrt(x); }
#else
inline float cartinv_sqrt(float x) { return std::sqrt(x); }
inline double cartinv_sqrt(double x) { return std::sqrt(x); }
#endif
}  // namespace cartinv

#endif  // CARTINV_CORE_H
