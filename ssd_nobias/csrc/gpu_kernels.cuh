// nobias_batch_norm's GPU kernels: the arithmetic of kernels.h on NCHW data in device memory.
//
// The library embeds this file and compiles it at run time with NVRTC (gpu_compute.cc), so it
// needs no nvcc and no header beyond gpu_args.h. It keeps to a subset of CUDA that a host
// compiler can also run (tests/model/csrc/cuda_emulation.h): no warp intrinsics, no atomics, no
// dynamic shared memory, one fixed-size shared array, and __syncthreads reached by every thread.
//
// Data of shape (N, C, inner) is N x C runs of `inner` values. A grid of runs * chunks blocks
// gives block (run, j) the values [j * chunk, (j + 1) * chunk) of its run, so every block works
// on one channel. Per-channel sums: each thread sums its strided values in P, the block adds the
// threads' sums in double (a fixed tree), and a per-channel kernel adds the blocks' sums in
// double in (n, j) order: no atomics, so every run gives the same bits.

#include "gpu_args.h"

namespace nobias_gpu {

#ifdef __CUDACC_RTC__
struct Half {
  unsigned short bits;
};
__device__ __forceinline__ float HalfToFloat(Half h) {
  float f;
  asm("cvt.f32.f16 %0, %1;" : "=f"(f) : "h"(h.bits));
  return f;
}
__device__ __forceinline__ Half FloatToHalf(float f) {
  Half h;
  asm("cvt.rn.f16.f32 %0, %1;" : "=h"(h.bits) : "f"(f));
  return h;
}
#endif  // a host build provides Half and its two conversions

// Loads and stores of data type T through its arithmetic type P.
template <typename T>
struct Data {
  typedef T P;
  __device__ static P Load(const void* p, long long i) { return static_cast<const T*>(p)[i]; }
  __device__ static void Store(void* p, long long i, P v) { static_cast<T*>(p)[i] = v; }
};
template <>
struct Data<Half> {
  typedef float P;
  __device__ static P Load(const void* p, long long i) {
    return HalfToFloat(static_cast<const Half*>(p)[i]);
  }
  __device__ static void Store(void* p, long long i, P v) {
    static_cast<Half*>(p)[i] = FloatToHalf(v);
  }
};

template <typename P>
__device__ __forceinline__ P& At(void* p, long long i) { return static_cast<P*>(p)[i]; }
template <typename P>
__device__ __forceinline__ P At(const void* p, long long i) { return static_cast<const P*>(p)[i]; }

// The mode is a value in device memory: the host never waits for it.
template <typename P>
__device__ bool Training(const KernelArgs& k) {
  return !k.use_global_stats && At<P>(k.is_train, 0) != P(0);
}

// This block's values [begin, end) and their channel.
struct Span {
  long long channel, begin, end;
};
__device__ Span BlockSpan(const KernelArgs& k) {
  const long long run = blockIdx.x / k.chunks;
  const long long first = (blockIdx.x % k.chunks) * k.chunk;
  const long long last = first + k.chunk < k.inner ? first + k.chunk : k.inner;
  Span s;
  s.channel = run % k.c;
  s.begin = run * k.inner + first;
  s.end = run * k.inner + last;
  return s;
}

// partial[block] = sum over the block's values of a' * b, a' = a where gate > 0 (if gated).
// The forward pass needs the sums in training only.
template <typename T, bool kForward>
__device__ void Dots(const KernelArgs& k) {
  typedef typename Data<T>::P P;
  if (kForward && !Training<P>(k)) return;
  const Span s = BlockSpan(k);
  P acc = 0;
  for (long long i = s.begin + threadIdx.x; i < s.end; i += blockDim.x) {
    P a = Data<T>::Load(k.a, i);
    if (k.gate != 0 && !(Data<T>::Load(k.gate, i) > P(0))) a = 0;
    acc += a * Data<T>::Load(k.b, i);
  }
  __shared__ double sums[kMaxThreads];
  sums[threadIdx.x] = acc;
  __syncthreads();
  for (unsigned int half = blockDim.x / 2; half > 0; half /= 2) {
    if (threadIdx.x < half) sums[threadIdx.x] += sums[threadIdx.x + half];
    __syncthreads();
  }
  if (threadIdx.x == 0) k.partial[blockIdx.x] = sums[0];
}

template <typename T>
__device__ void ForwardDots(const KernelArgs& k) { Dots<T, true>(k); }
template <typename T>
__device__ void BackwardDots(const KernelArgs& k) { Dots<T, false>(k); }

// One thread per channel: the sum of its blocks' partial sums, in double, in (n, j) order.
__device__ double ChannelSum(const KernelArgs& k, long long c) {
  double total = 0;
  for (long long n = 0; n < k.n; ++n) {
    for (long long j = 0; j < k.chunks; ++j) total += k.partial[(n * k.c + c) * k.chunks + j];
  }
  return total;
}

__device__ long long ThreadChannel() {
  return static_cast<long long>(blockIdx.x) * blockDim.x + threadIdx.x;
}

// m2 (training: the batch's, and running_var moves towards it; else running_var),
// inv_rms = 1 / sqrt(m2 + eps) and the scale gamma * inv_rms.
template <typename T>
__device__ void FinalizeForward(const KernelArgs& k) {
  typedef typename Data<T>::P P;
  const long long c = ThreadChannel();
  if (c >= k.c) return;
  double m2 = At<P>(k.running_var, c);
  if (Training<P>(k)) {
    m2 = ChannelSum(k, c) / static_cast<double>(k.n * k.inner);
    At<P>(k.running_var, c) = static_cast<P>(k.momentum * At<P>(k.running_var, c) +
                                              (1.0 - k.momentum) * m2);
  }
  const double r = 1.0 / sqrt(m2 + k.eps);
  At<P>(k.inv_rms, c) = static_cast<P>(r);
  At<P>(k.coef_a, c) = static_cast<P>(k.fix_gamma ? r : At<P>(k.gamma, c) * r);
}

// y = scale * x, then max(y, 0) with the fused ReLU.
template <typename T>
__device__ void Scale(const KernelArgs& k) {
  typedef typename Data<T>::P P;
  const Span s = BlockSpan(k);
  const P scale = At<P>(k.coef_a, s.channel);
  for (long long i = s.begin + threadIdx.x; i < s.end; i += blockDim.x) {
    const P y = scale * Data<T>::Load(k.b, i);
    Data<T>::Store(k.out, i, k.relu && y < P(0) ? P(0) : y);
  }
}

// From dot = sum(dy' * x): dgamma = r * dot, and dx = a * dy' - b * x with a = g * r and, in
// training, b = g * r^3 * dot / count (r = inv_rms, g = gamma or 1).
template <typename T>
__device__ void FinalizeBackward(const KernelArgs& k) {
  typedef typename Data<T>::P P;
  const long long c = ThreadChannel();
  if (c >= k.c) return;
  const double dot = ChannelSum(k, c);
  const double r = At<P>(k.inv_rms, c);
  const double g = k.fix_gamma ? 1.0 : static_cast<double>(At<P>(k.gamma, c));
  At<P>(k.dgamma, c) = k.fix_gamma ? P(0) : static_cast<P>(dot * r);
  At<P>(k.coef_a, c) = static_cast<P>(g * r);
  At<P>(k.coef_b, c) =
      Training<P>(k) ? static_cast<P>(g * r * r * r * dot / static_cast<double>(k.n * k.inner))
                     : P(0);
}

template <typename T>
__device__ void InputGrad(const KernelArgs& k) {
  typedef typename Data<T>::P P;
  const Span s = BlockSpan(k);
  const P a = At<P>(k.coef_a, s.channel), b = At<P>(k.coef_b, s.channel);
  for (long long i = s.begin + threadIdx.x; i < s.end; i += blockDim.x) {
    P dy = Data<T>::Load(k.a, i);
    if (k.gate != 0 && !(Data<T>::Load(k.gate, i) > P(0))) dy = 0;
    Data<T>::Store(k.out, i, a * dy - b * Data<T>::Load(k.b, i));
  }
}

}  // namespace nobias_gpu

// The entry points, by name: nobias_<kernel>_<f16|f32|f64> (gpu_compute.cc looks them up).
#define NOBIAS_GPU_ENTRY(name, body, T, suffix)                                   \
  extern "C" __global__ void __launch_bounds__(nobias_gpu::kMaxThreads)          \
      nobias_##name##_##suffix(nobias_gpu::KernelArgs k) {                        \
    nobias_gpu::body(k);                                                          \
  }
#define NOBIAS_GPU_ENTRIES(T, suffix)                                             \
  NOBIAS_GPU_ENTRY(forward_dots, ForwardDots<T>, T, suffix)                   \
  NOBIAS_GPU_ENTRY(finalize_forward, FinalizeForward<T>, T, suffix)               \
  NOBIAS_GPU_ENTRY(scale, Scale<T>, T, suffix)                                    \
  NOBIAS_GPU_ENTRY(backward_dots, BackwardDots<T>, T, suffix)                 \
  NOBIAS_GPU_ENTRY(finalize_backward, FinalizeBackward<T>, T, suffix)             \
  NOBIAS_GPU_ENTRY(input_grad, InputGrad<T>, T, suffix)
NOBIAS_GPU_ENTRIES(nobias_gpu::Half, f16)
NOBIAS_GPU_ENTRIES(float, f32)
NOBIAS_GPU_ENTRIES(double, f64)
