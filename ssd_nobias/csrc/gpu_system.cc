// The GPU compute with this process's CUDA driver and NVRTC: the libcuda and libnvrtc that
// MXNet's CUDA build (mxnet-cu11x) has loaded, found with dlopen. Nothing here links to CUDA,
// so the library still loads in MXNet's CPU wheel, where the "gpu" compute never runs.

#include <dlfcn.h>

#include <string>

#include "gpu_compute.h"

namespace nobias_gpu {
namespace {

// The sonames of CUDA 11 to 13 (libnvrtc.so.11.2 serves 11.2 to 11.8) and of CUDA 10.2; one
// MXNet has loaded already comes first (Open).
const char* const kCudaNames[] = {"libcuda.so.1", "libcuda.so", nullptr};
const char* const kNvrtcNames[] = {"libnvrtc.so.11.2", "libnvrtc.so.12", "libnvrtc.so.13",
                                   "libnvrtc.so.11.1", "libnvrtc.so.11.0", "libnvrtc.so.10.2",
                                   "libnvrtc.so", nullptr};

// The first of `names` already loaded in the process, else the first that loads.
void* Open(const char* const* names, std::string* error) {
  for (const char* const* name = names; *name != nullptr; ++name) {
    if (void* lib = dlopen(*name, RTLD_NOW | RTLD_NOLOAD)) return lib;
  }
  for (const char* const* name = names; *name != nullptr; ++name) {
    if (void* lib = dlopen(*name, RTLD_NOW)) return lib;
  }
  *error = std::string("cannot load ") + names[0] + ": " + dlerror();
  return nullptr;
}

template <typename Fn>
void Bind(void* lib, const char* name, Fn* fn, std::string* error) {
  *fn = lib == nullptr ? nullptr : reinterpret_cast<Fn>(dlsym(lib, name));
  if (lib != nullptr && *fn == nullptr && error->empty()) *error = std::string("no ") + name;
}

struct System {
  CudaApi cuda = {};
  NvrtcApi nvrtc = {};
  std::string cuda_error, nvrtc_error;

  System() {
    void* cu = Open(kCudaNames, &cuda_error);
    Bind(cu, "cuInit", &cuda.cuInit, &cuda_error);
    Bind(cu, "cuCtxGetCurrent", &cuda.cuCtxGetCurrent, &cuda_error);
    Bind(cu, "cuCtxSetCurrent", &cuda.cuCtxSetCurrent, &cuda_error);
    Bind(cu, "cuCtxGetDevice", &cuda.cuCtxGetDevice, &cuda_error);
    Bind(cu, "cuDeviceGet", &cuda.cuDeviceGet, &cuda_error);
    Bind(cu, "cuDeviceGetAttribute", &cuda.cuDeviceGetAttribute, &cuda_error);
    Bind(cu, "cuDevicePrimaryCtxRetain", &cuda.cuDevicePrimaryCtxRetain, &cuda_error);
    Bind(cu, "cuModuleLoadData", &cuda.cuModuleLoadData, &cuda_error);
    Bind(cu, "cuModuleGetFunction", &cuda.cuModuleGetFunction, &cuda_error);
    Bind(cu, "cuLaunchKernel", &cuda.cuLaunchKernel, &cuda_error);
    Bind(cu, "cuMemsetD8Async", &cuda.cuMemsetD8Async, &cuda_error);
    Bind(cu, "cuGetErrorString", &cuda.cuGetErrorString, &cuda_error);
    if (cuda_error.empty() && cuda.cuInit(0) != 0) cuda_error = "cuInit failed: no usable GPU";

    void* nv = Open(kNvrtcNames, &nvrtc_error);
    Bind(nv, "nvrtcCreateProgram", &nvrtc.nvrtcCreateProgram, &nvrtc_error);
    Bind(nv, "nvrtcCompileProgram", &nvrtc.nvrtcCompileProgram, &nvrtc_error);
    Bind(nv, "nvrtcGetProgramLogSize", &nvrtc.nvrtcGetProgramLogSize, &nvrtc_error);
    Bind(nv, "nvrtcGetProgramLog", &nvrtc.nvrtcGetProgramLog, &nvrtc_error);
    Bind(nv, "nvrtcGetPTXSize", &nvrtc.nvrtcGetPTXSize, &nvrtc_error);
    Bind(nv, "nvrtcGetPTX", &nvrtc.nvrtcGetPTX, &nvrtc_error);
    Bind(nv, "nvrtcDestroyProgram", &nvrtc.nvrtcDestroyProgram, &nvrtc_error);
    Bind(nv, "nvrtcGetErrorString", &nvrtc.nvrtcGetErrorString, &nvrtc_error);
  }

  // Why the GPU compute cannot run; empty if it can.
  std::string Unavailable() const {
    if (!cuda_error.empty()) return "CUDA driver: " + cuda_error;
    if (!nvrtc_error.empty()) return "NVRTC: " + nvrtc_error;
    return "";
  }
};

const System& TheSystem() {
  static const System system;  // loaded once, on first use, thread-safely
  return system;
}

}  // namespace

const Apis* SystemApis(std::string* why) {
  const System& system = TheSystem();
  *why = system.Unavailable();
  static const Apis apis{&system.cuda, &system.nvrtc};
  return why->empty() ? &apis : nullptr;
}

namespace {

template <typename Compute>
MXReturnValue OnSystem(Compute compute, const Attrs& attrs, std::vector<MXTensor>* inputs,
                       std::vector<MXTensor>* outputs, const OpResource& res) {
  std::string why;
  const Apis* apis = SystemApis(&why);
  if (apis == nullptr) {
    MX_ERROR_MSG << "nobias_batch_norm cannot run on the GPU: " << why;
    return mxnet::ext::MX_FAIL;
  }
  return compute(*apis, attrs, inputs, outputs, res);
}

thread_local std::string last_result;

}  // namespace

MXReturnValue SystemForward(const Attrs& attrs, std::vector<MXTensor>* inputs,
                            std::vector<MXTensor>* outputs, const OpResource& res) {
  return OnSystem(Forward, attrs, inputs, outputs, res);
}

MXReturnValue SystemBackward(const Attrs& attrs, std::vector<MXTensor>* inputs,
                             std::vector<MXTensor>* outputs, const OpResource& res) {
  return OnSystem(Backward, attrs, inputs, outputs, res);
}

}  // namespace nobias_gpu

// For Python (native.py) and the tests, through ctypes.

// Why the GPU compute cannot run in this process ("" if it can): a missing driver or NVRTC, or
// kernels that NVRTC does not compile.
extern "C" const char* nobias_gpu_unavailable() {
  using nobias_gpu::last_result;
  const nobias_gpu::System& system = nobias_gpu::TheSystem();
  last_result = system.Unavailable();
  if (last_result.empty()) {
    last_result = nobias_gpu::KernelCompileError(nobias_gpu::Apis{&system.cuda, &system.nvrtc});
  }
  return last_result.c_str();
}

// The kernels compiled for `arch` (nullptr: the library's own) as the GPU compute compiles
// them, with this process's NVRTC; *ok says whether it worked, else the result is the reason.
extern "C" const char* nobias_gpu_ptx(const char* arch, int* ok) {
  using nobias_gpu::last_result;
  const nobias_gpu::System& system = nobias_gpu::TheSystem();
  *ok = 0;
  if (!system.nvrtc_error.empty()) {
    last_result = "NVRTC: " + system.nvrtc_error;
    return last_result.c_str();
  }
  std::string log;
  *ok = nobias_gpu::CompilePtx(system.nvrtc, arch ? arch : nobias_gpu::kArch, &last_result,
                               &log);
  if (!*ok) last_result = log;
  return last_result.c_str();
}
