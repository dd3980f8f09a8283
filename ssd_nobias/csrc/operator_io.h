// The inputs and outputs of nobias_batch_norm and of its backward, by position: as nobias_bn.cc
// registers them, and as the CPU (mkldnn_layouts.cc) and GPU (gpu_compute.cc) computes read them.

#ifndef SSD_NOBIAS_OPERATOR_IO_H_
#define SSD_NOBIAS_OPERATOR_IO_H_

namespace nobias {
namespace io {

// forward inputs; backward outputs (their gradients) in the same order
constexpr int kData = 0, kGamma = 1, kRunningMean = 2, kRunningVar = 3, kIsTrain = 4;
constexpr int kNumInputs = 5;
// forward outputs: out, inv_rms (the 1 / sqrt(. + eps) applied)
constexpr int kNumOutputs = 2;
// backward inputs: the output gradients, then the forward inputs, then the forward outputs
constexpr int kFwdIn = kNumOutputs, kFwdOut = kNumOutputs + kNumInputs;

}  // namespace io
}  // namespace nobias

#endif  // SSD_NOBIAS_OPERATOR_IO_H_
