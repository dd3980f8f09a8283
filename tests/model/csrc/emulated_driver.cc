// An emulated CUDA driver and NVRTC for gpu_compute.cc's host code: NVRTC "compiles" to a
// marker, and a launch runs the kernel of that name, gpu_kernels.cuh built by the host compiler
// with cuda_emulation.h, on host memory ("device" memory is host memory).
//
// The emulated driver checks what a GPU would refuse or get wrong: launches on a stream other
// than the operator's, blocks larger than the kernels' shared array or not a power of two,
// grids in more than one dimension, kernels missing from the module. The extern "C" emu_*
// functions set up the emulated machine and read its counts (tests/test_gpu_compute.py).

#include "emulated_driver.h"

#include <dlfcn.h>

#include <cstdint>
#include <cstring>
#include <string>

#include "cuda_emulation.h"
#include "gpu_kernels.cuh"
#include "gpu_compute.h"

namespace {

using nobias_gpu::CUcontext;
using nobias_gpu::CUdevice;
using nobias_gpu::CUdeviceptr;
using nobias_gpu::CUfunction;
using nobias_gpu::CUmodule;
using nobias_gpu::CUresult;
using nobias_gpu::CUstream;
using nobias_gpu::KernelArgs;
using nobias_gpu::nvrtcProgram;
using nobias_gpu::nvrtcResult;

const char kEmulatedPtx[] = "emulated PTX";
CUstream const kStream = reinterpret_cast<CUstream>(0x5354);
constexpr CUresult kInvalidValue = 1, kInvalidImage = 200, kNotFound = 500;

std::string launched;  // the kernels launched by the last call, "name:blocksxthreads;..."
std::string problem;   // the first thing a GPU would have refused

// Devices and their primary contexts: the calling thread starts with device 0's current.
int device_of_call = 0;  // the device the operator's arrays are on
CUcontext current = reinterpret_cast<CUcontext>(0xc0);  // device 0's
int module_loads = 0, primary_retains = 0;
int capability = 50;        // every device's compute capability, major * 10 + minor
std::string compiled_arch;  // the --gpu-architecture of the last compile
std::string compiled_archs = ";";  // of every compile that succeeded, ";"-separated
std::string refused_arch;   // an architecture the emulated NVRTC refuses, as CUDA 13's does 50

CUcontext PrimaryContext(int device) { return reinterpret_cast<CUcontext>(0xc0 + device); }

CUresult Refuse(const std::string& why) {
  if (problem.empty()) problem = why;
  return kInvalidValue;
}

CUresult Init(unsigned int) { return 0; }
CUresult CtxGetCurrent(CUcontext* ctx) { *ctx = current; return 0; }
CUresult CtxSetCurrent(CUcontext ctx) { current = ctx; return 0; }
CUresult CtxGetDevice(CUdevice* device) {
  if (current == nullptr) return Refuse("cuCtxGetDevice without a current context");
  *device = static_cast<CUdevice>(reinterpret_cast<uintptr_t>(current) - 0xc0);
  return 0;
}
CUresult DeviceGet(CUdevice* device, int ordinal) { *device = ordinal; return 0; }
CUresult DeviceGetAttribute(int* value, int attribute, CUdevice) {
  if (attribute == nobias_gpu::kComputeCapabilityMajor) *value = capability / 10;
  else if (attribute == nobias_gpu::kComputeCapabilityMinor) *value = capability % 10;
  else return Refuse("cuDeviceGetAttribute: attribute " + std::to_string(attribute));
  return 0;
}
CUresult PrimaryCtxRetain(CUcontext* ctx, CUdevice device) {
  ++primary_retains;
  *ctx = PrimaryContext(device);
  return 0;
}

CUresult ModuleLoadData(CUmodule* module, const void* image) {
  if (std::strcmp(static_cast<const char*>(image), kEmulatedPtx) != 0) return kInvalidImage;
  ++module_loads;
  *module = reinterpret_cast<CUmodule>(0x60d);
  return 0;
}

// The module's functions are this build's own extern "C" kernels (a library loaded by Python,
// or an executable linked with -rdynamic).
CUresult ModuleGetFunction(CUfunction* function, CUmodule, const char* name) {
  void* symbol = dlsym(RTLD_DEFAULT, name);
  if (symbol == nullptr) {
    Dl_info self;
    dladdr(reinterpret_cast<void*>(&ModuleGetFunction), &self);
    void* lib = dlopen(self.dli_fname, RTLD_NOW | RTLD_NOLOAD);
    symbol = lib == nullptr ? nullptr : dlsym(lib, name);
  }
  if (symbol == nullptr) return kNotFound;
  *function = reinterpret_cast<CUfunction>(symbol);
  return 0;
}

CUresult LaunchKernel(CUfunction f, unsigned int gx, unsigned int gy, unsigned int gz,
                      unsigned int bx, unsigned int by, unsigned int bz, unsigned int shared,
                      CUstream stream, void** params, void** extra) {
  Dl_info info;
  dladdr(reinterpret_cast<void*>(f), &info);
  const std::string name = info.dli_sname ? info.dli_sname : "?";
  if (stream != kStream) return Refuse(name + ": launched on another stream");
  if (current != PrimaryContext(device_of_call)) {
    return Refuse(name + ": launched in another device's context");
  }
  if (gy != 1 || gz != 1 || by != 1 || bz != 1) return Refuse(name + ": not a 1-D launch");
  if (bx == 0 || bx > static_cast<unsigned int>(nobias_gpu::kMaxThreads) || (bx & (bx - 1))) {
    return Refuse(name + ": block of " + std::to_string(bx) + " threads");
  }
  if (gx == 0 || shared != 0 || extra != nullptr || params == nullptr) {
    return Refuse(name + ": bad launch arguments");
  }
  launched += name + ":" + std::to_string(gx) + "x" + std::to_string(bx) + ";";
  EmulateLaunch(reinterpret_cast<void (*)(KernelArgs)>(f), gx, bx,
                *static_cast<KernelArgs*>(params[0]));
  return 0;
}

CUresult MemsetD8Async(CUdeviceptr ptr, unsigned char value, size_t count, CUstream stream) {
  if (stream != kStream) return Refuse("cuMemsetD8Async on another stream");
  std::memset(reinterpret_cast<void*>(ptr), value, count);
  return 0;
}

CUresult GetErrorString(CUresult, const char** text) {
  *text = problem.empty() ? "emulated failure" : problem.c_str();
  return 0;
}

nvrtcResult CreateProgram(nvrtcProgram* prog, const char*, const char*, int, const char* const*,
                          const char* const*) {
  *prog = reinterpret_cast<nvrtcProgram>(0x9);
  return 0;
}
std::string compile_log;
nvrtcResult CompileProgram(nvrtcProgram, int num_options, const char* const* options) {
  const std::string prefix = "--gpu-architecture=";
  compile_log.clear();
  for (int i = 0; i < num_options; ++i) {
    if (std::string(options[i]).rfind(prefix, 0) == 0) compiled_arch = options[i] + prefix.size();
  }
  if (compiled_arch == refused_arch) {
    compile_log = "nvrtc: error: invalid value for --gpu-architecture (-arch)";
    return 7;  // NVRTC_ERROR_INVALID_OPTION
  }
  compiled_archs += compiled_arch + ";";
  return 0;
}
nvrtcResult GetProgramLogSize(nvrtcProgram, size_t* size) {
  *size = compile_log.size() + 1;
  return 0;
}
nvrtcResult GetProgramLog(nvrtcProgram, char* log) {
  std::memcpy(log, compile_log.c_str(), compile_log.size() + 1);
  return 0;
}
nvrtcResult GetPTXSize(nvrtcProgram, size_t* size) { *size = sizeof kEmulatedPtx; return 0; }
nvrtcResult GetPTX(nvrtcProgram, char* ptx) {
  std::memcpy(ptx, kEmulatedPtx, sizeof kEmulatedPtx);
  return 0;
}
nvrtcResult DestroyProgram(nvrtcProgram*) { return 0; }
const char* NvrtcErrorString(nvrtcResult) { return "emulated NVRTC failure"; }

const nobias_gpu::CudaApi kCuda = {Init, CtxGetCurrent, CtxSetCurrent, CtxGetDevice,
                                   DeviceGet, DeviceGetAttribute, PrimaryCtxRetain,
                                   ModuleLoadData,
                                   ModuleGetFunction, LaunchKernel, MemsetD8Async,
                                   GetErrorString};
const nobias_gpu::NvrtcApi kNvrtc = {CreateProgram, CompileProgram, GetProgramLogSize,
                                     GetProgramLog, GetPTXSize, GetPTX, DestroyProgram,
                                     NvrtcErrorString};

}  // namespace

namespace emulation {

const nobias_gpu::Apis& Apis() {
  static const nobias_gpu::Apis apis{&kCuda, &kNvrtc};
  return apis;
}
CUstream Stream() { return kStream; }
int DeviceOfCall() { return device_of_call; }
void StartCall() {
  launched.clear();
  problem.clear();
}
std::string Problem() { return problem; }
std::string Launched() { return launched; }

}  // namespace emulation

// The emulated machine: the device the next emu_compute's arrays are on, a thread that starts
// with `current_device`'s context current (-1: none), and the counts since the last reset.
extern "C" void emu_reset(int device, int current_device) {
  device_of_call = device;
  current = current_device < 0 ? nullptr : PrimaryContext(current_device);
  module_loads = primary_retains = 0;
}
extern "C" int emu_module_loads() { return module_loads; }
// Every device's compute capability (major * 10 + minor), and an architecture NVRTC refuses.
extern "C" void emu_set_devices(int compute_capability, const char* refused) {
  capability = compute_capability;
  refused_arch = refused;
}
extern "C" const char* emu_compiled_archs() { return compiled_archs.c_str(); }
extern "C" const char* emu_arch_for(int device) {
  static std::string arch;
  arch = nobias_gpu::ArchFor(kCuda, device);
  return arch.c_str();
}
extern "C" const char* emu_kernel_compile_error() {
  static std::string why;
  why = nobias_gpu::KernelCompileError(emulation::Apis());
  return why.c_str();
}
extern "C" int emu_primary_retains() { return primary_retains; }
