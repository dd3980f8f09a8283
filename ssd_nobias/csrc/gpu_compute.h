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

// The oldest virtual architecture the kernels are compiled for (Maxwell, as old as anything
// mxnet-cu11x runs on). Each GPU gets PTX for its own compute capability, never below this
// floor (NVRTC of CUDA 13 no longer compiles for Maxwell to Volta); the environment variable
// kArchEnv (e.g. compute_80) overrides it for every device.
extern const char kArch[];
extern const char kArchEnv[];

// The virtual architecture for `device`: kArchEnv if set, else compute_<major><minor> of the
// device, at least kArch.
std::string ArchFor(const CudaApi& cuda, CUdevice device);

// gpu_kernels.cuh to PTX for `arch` (compute_XX) with the library's NVRTC options. False on
// failure, with the reason in `log`; the compiler's messages, if any, are in `log` either way.
bool CompilePtx(const NvrtcApi& nvrtc, const std::string& arch, std::string* ptx,
                std::string* log);

// Why gpu_kernels.cuh does not compile for device 0's architecture (ArchFor) with `apis`; empty
// if it does. The PTX is kept for the compute functions, which compile it on their first call
// on a device of that architecture otherwise.
std::string KernelCompileError(const Apis& apis);

// The lib_api compute functions, on device arrays (see nobias_bn.cc for inputs and outputs).
MXReturnValue Forward(const Apis& apis, const Attrs& attrs, std::vector<MXTensor>* inputs,
                      std::vector<MXTensor>* outputs, const OpResource& res);
MXReturnValue Backward(const Apis& apis, const Attrs& attrs, std::vector<MXTensor>* inputs,
                       std::vector<MXTensor>* outputs, const OpResource& res);

// This process's libcuda and libnvrtc (gpu_system.cc), loaded on first use; nullptr, with the
// reason in `why`, if either is missing or no GPU is usable.
const Apis* SystemApis(std::string* why);

// The compute with SystemApis: what nobias_bn.cc registers for "gpu" contexts.
MXReturnValue SystemForward(const Attrs& attrs, std::vector<MXTensor>* inputs,
                            std::vector<MXTensor>* outputs, const OpResource& res);
MXReturnValue SystemBackward(const Attrs& attrs, std::vector<MXTensor>* inputs,
                             std::vector<MXTensor>* outputs, const OpResource& res);

}  // namespace nobias_gpu

#endif  // SSD_NOBIAS_GPU_COMPUTE_H_
