// Enough of CUDA for a host compiler to run ssd_nobias/csrc/gpu_kernels.cuh on the CPU: a
// kernel launch runs its blocks one after another, a block's threads as std::threads that meet
// at __syncthreads on a std::barrier; __shared__ variables are statics, so the threads of the
// running block share them. float16 is the compiler's _Float16 (IEEE, round to nearest
// even, as the GPU's cvt.rn). C++20.

#ifndef SSD_NOBIAS_TESTS_CUDA_EMULATION_H_
#define SSD_NOBIAS_TESTS_CUDA_EMULATION_H_

#include <barrier>
#include <cmath>
#include <cstring>
#include <thread>
#include <vector>

struct dim3 {
  unsigned int x = 1, y = 1, z = 1;
};

inline thread_local dim3 threadIdx, blockIdx;
inline dim3 blockDim, gridDim;
inline std::barrier<>* emulated_block_barrier = nullptr;

#define __global__
#define __device__
#define __forceinline__ inline
#define __shared__ static
#define __launch_bounds__(threads)

inline void __syncthreads() { emulated_block_barrier->arrive_and_wait(); }

using std::sqrt;

namespace nobias_gpu {

struct Half {
  unsigned short bits;
};
inline float HalfToFloat(Half h) {
  _Float16 v;
  std::memcpy(&v, &h.bits, sizeof v);
  return static_cast<float>(v);
}
inline Half FloatToHalf(float f) {
  const _Float16 v = static_cast<_Float16>(f);
  Half h;
  std::memcpy(&h.bits, &v, sizeof v);
  return h;
}

}  // namespace nobias_gpu

// Runs kernel(args) on a one-dimensional grid: `threads` std::threads run every block in turn,
// all finishing a block before any starts the next (so the statics serve each block afresh).
template <typename Args>
void EmulateLaunch(void (*kernel)(Args), unsigned int blocks, unsigned int threads, Args args) {
  gridDim = dim3{blocks, 1, 1};
  blockDim = dim3{threads, 1, 1};
  std::barrier<> barrier(threads);
  emulated_block_barrier = &barrier;
  std::vector<std::thread> block;
  for (unsigned int t = 0; t < threads; ++t) {
    block.emplace_back([=, &barrier] {
      threadIdx = dim3{t, 1, 1};
      for (unsigned int b = 0; b < blocks; ++b) {
        blockIdx = dim3{b, 1, 1};
        kernel(args);
        barrier.arrive_and_wait();
      }
    });
  }
  for (std::thread& thread : block) thread.join();
  emulated_block_barrier = nullptr;
}

#endif  // SSD_NOBIAS_TESTS_CUDA_EMULATION_H_
