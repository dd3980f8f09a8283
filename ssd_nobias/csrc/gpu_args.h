// The one argument of every kernel in gpu_kernels.cuh. The host compiler and NVRTC lay it out
// alike: eight-byte members first, then ints. No header is needed, so NVRTC can take it as is.

#ifndef SSD_NOBIAS_GPU_ARGS_H_
#define SSD_NOBIAS_GPU_ARGS_H_

namespace nobias_gpu {

const int kMaxThreads = 256;  // threads per block, at most; a power of two

// P: the parameters' type (float for float16 and float32 data, double for float64); the
// per-channel coefficients are in the same type.
struct KernelArgs {
  const void* a;         // forward: x; backward: dy
  const void* b;         // x
  const void* gate;      // backward with the fused ReLU: y (dy counts where y > 0); else null
  void* out;             // forward: y; backward: dx
  const void* gamma;     // P, C values
  void* running_var;     // P, C values
  const void* is_train;  // P, one value: nonzero in training
  void* inv_rms;         // P, C values: written forward, read backward
  void* dgamma;          // P, C values
  double* partial;       // runs * chunks block sums, run = n * C + c
  void* coef_a;          // P, C values: forward scale, backward dy coefficient
  void* coef_b;          // P, C values: backward x coefficient
  long long n, c, inner;
  long long chunk;   // values of a run per block
  long long chunks;  // blocks per run
  double eps, momentum;
  int use_global_stats, fix_gamma, relu;
};

}  // namespace nobias_gpu

#endif  // SSD_NOBIAS_GPU_ARGS_H_
