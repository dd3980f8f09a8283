// nobias_batch_norm's GPU compute: gpu_kernels.cuh compiled by NVRTC, launched on MXNet's stream
// through the CUDA driver API, with the functions of whichever Apis it is given (gpu_api.h).

#ifndef SSD_NOBIAS_GPU_COMPUTE_H_
#define SSD_NOBIAS_GPU_COMPUTE_H_

#include <string>
#include <unordered_map>
#include <vector>

#include "mxnet/lib_api.h"
#include "gpu_api.h"

namespace nobias_gpu {

typedef std::unordered_map<std::string, std::string> Attrs;
using mxnet::ext::MXReturnValue;
using mxnet::ext::MXTensor;
using mxnet::ext::OpResource;

// The virtual architecture the kernels are compiled for: PTX that the driver compiles for the
// GPU at hand, any GPU from Maxwell on (as old as anything mxnet-cu11x runs on).
extern const char kArch[];

// gpu_kernels.cuh to PTX for `arch` (compute_XX) with the library's NVRTC options. False on
// failure, with the reason in `log`; the compiler's messages, if any, are in `log` either way.
bool CompilePtx(const NvrtcApi& nvrtc, const std::string& arch, std::string* ptx,
                std::string* log);

// Why gpu_kernels.cuh does not compile with `nvrtc`; empty if it does. The PTX is kept for the
// compute functions, which compile it on their first call otherwise.
std::string KernelCompileError(const NvrtcApi& nvrtc);

// The lib_api compute functions, on device arrays (see nobias_bn.cc for inputs and outputs).
MXReturnValue Forward(const Apis& apis, const Attrs& attrs, std::vector<MXTensor>* inputs,
                      std::vector<MXTensor>* outputs, const OpResource& res);
MXReturnValue Backward(const Apis& apis, const Attrs& attrs, std::vector<MXTensor>* inputs,
                       std::vector<MXTensor>* outputs, const OpResource& res);

// The same with this process's libcuda and libnvrtc (gpu_system.cc): what nobias_bn.cc
// registers for "gpu" contexts.
MXReturnValue SystemForward(const Attrs& attrs, std::vector<MXTensor>* inputs,
                            std::vector<MXTensor>* outputs, const OpResource& res);
MXReturnValue SystemBackward(const Attrs& attrs, std::vector<MXTensor>* inputs,
                             std::vector<MXTensor>* outputs, const OpResource& res);

}  // namespace nobias_gpu

#endif  // SSD_NOBIAS_GPU_COMPUTE_H_
