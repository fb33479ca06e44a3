// drivekit CUDA kernels: portability layer.
//
// The same source is compiled two ways:
//  - by NVRTC at run time for the GPU (`__CUDACC_RTC__` defined): kernels are `__global__`, one
//    thread per rollout or per agent;
//  - as plain C++ by the host compiler for the kernel emulator (the `cuda-emulated` backend and the
//    CI tests): `DK_TID` is a global the emulator loops over, one "thread" after another.
// Kernels therefore never synchronise or share memory between threads: each thread writes only
// its own rollout's or agent's slots.
//
// The generated prelude (constants from the Rust side, see `src/cuda/source.rs`) and `args.h`
// come before this file.

#ifdef __CUDACC_RTC__
#define DK_KERNEL extern "C" __global__
#define DK_DEV static __device__ __forceinline__
#define DK_TID (blockIdx.x * blockDim.x + threadIdx.x)
#else
#include <math.h>
#define DK_KERNEL static
#define DK_DEV static inline
static unsigned int dk_emulated_tid;
#define DK_TID dk_emulated_tid
#endif

typedef long long i64;
typedef unsigned int u32;
typedef unsigned char u8;

// +infinity and NaN as constant expressions both compilers fold.
#define DK_INF (1.0e308 * 10.0)
#define DK_NAN (DK_INF - DK_INF)

#define DK_PI 3.14159265358979323846
#define DK_TAU 6.28318530717958647692

DK_DEV double dk_norm(double x, double y) { return sqrt(x * x + y * y); }

// Rust's f64::clamp (NaN passes through).
DK_DEV double dk_clamp(double x, double lo, double hi) {
  if (x < lo) x = lo;
  if (x > hi) x = hi;
  return x;
}

DK_DEV double dk_max(double a, double b) { return fmax(a, b); }
DK_DEV double dk_min(double a, double b) { return fmin(a, b); }

// geometry::wrap_angle: (a + π).rem_euclid(2π) − π, into (−π, π].
DK_DEV double dk_wrap(double a) {
  double r = fmod(a + DK_PI, DK_TAU);
  if (r < 0.0) r += DK_TAU;
  r -= DK_PI;
  if (r <= -DK_PI) r += DK_TAU;
  return r;
}
