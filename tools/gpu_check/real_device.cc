// The GPU check's device on a real GPU: the driver and NVRTC that gpu_system.cc loads for the
// operator (SystemApis), and the check's own calls looked up in that same libcuda.

#include <dlfcn.h>

#include <string>

#include "device.h"
#include "gpu_compute.h"

namespace gpu_check {
namespace {

// CU_DEVICE_ATTRIBUTE_MEMORY_CLOCK_RATE (kHz), _GLOBAL_MEMORY_BUS_WIDTH (bits), _L2_CACHE_SIZE
constexpr int kMemoryClock = 36, kBusWidth = 37, kL2Size = 38;

template <typename Fn>
bool Bind(void* lib, Fn* fn, std::string* why, const char* name, const char* fallback = nullptr) {
  void* symbol = dlsym(lib, name);
  if (symbol == nullptr && fallback != nullptr) symbol = dlsym(lib, fallback);
  *fn = reinterpret_cast<Fn>(symbol);
  if (symbol == nullptr && why->empty()) *why = std::string("libcuda has no ") + name;
  return symbol != nullptr;
}

}  // namespace

bool OpenDevice(Device* dev, std::string* why) {
  const nobias_gpu::Apis* apis = nobias_gpu::SystemApis(why);
  if (apis == nullptr) return false;
  dev->apis = *apis;
  // the libcuda that gpu_system.cc loaded: found from one of its functions
  Dl_info info;
  void* lib = nullptr;
  if (dladdr(reinterpret_cast<void*>(apis->cuda->cuInit), &info) != 0) {
    lib = dlopen(info.dli_fname, RTLD_NOW | RTLD_NOLOAD);
  }
  if (lib == nullptr) {
    *why = "cannot find the libcuda gpu_system.cc loaded";
    return false;
  }
  DeviceApi& api = dev->api;
  CUresult (*stream_create)(CUstream*, unsigned int) = nullptr;
  CUresult (*device_name)(char*, int, int) = nullptr;
  CUresult (*driver_version)(int*) = nullptr;
  Bind(lib, &api.cuMemAlloc, why, "cuMemAlloc_v2");
  Bind(lib, &api.cuMemFree, why, "cuMemFree_v2");
  Bind(lib, &api.cuMemcpyHtoD, why, "cuMemcpyHtoD_v2");
  Bind(lib, &api.cuMemcpyDtoH, why, "cuMemcpyDtoH_v2");
  Bind(lib, &api.cuMemcpyDtoDAsync, why, "cuMemcpyDtoDAsync_v2");
  Bind(lib, &api.cuStreamSynchronize, why, "cuStreamSynchronize");
  Bind(lib, &api.cuEventCreate, why, "cuEventCreate");
  Bind(lib, &api.cuEventRecord, why, "cuEventRecord");
  Bind(lib, &api.cuEventSynchronize, why, "cuEventSynchronize");
  Bind(lib, &api.cuEventElapsedTime, why, "cuEventElapsedTime_v2", "cuEventElapsedTime");
  Bind(lib, &api.cuEventDestroy, why, "cuEventDestroy_v2", "cuEventDestroy");
  Bind(lib, &stream_create, why, "cuStreamCreate");
  Bind(lib, &device_name, why, "cuDeviceGetName");
  Bind(lib, &driver_version, why, "cuDriverGetVersion");
  if (!why->empty()) return false;

  // A blocking stream (flags 0): kernels on it wait for the copies the check makes on the
  // legacy default stream, whose host-to-device ones may return before the data has landed.
  const nobias_gpu::CudaApi& cu = *apis->cuda;
  nobias_gpu::CUdevice device = 0;
  nobias_gpu::CUcontext ctx = nullptr;
  char name[256] = {};
  int version = 0, major = 0, minor = 0, clock_khz = 0, bus_bits = 0, l2 = 0;
  if (cu.cuDeviceGet(&device, 0) != 0 || cu.cuDevicePrimaryCtxRetain(&ctx, device) != 0 ||
      cu.cuCtxSetCurrent(ctx) != 0 || stream_create(&dev->stream, 0) != 0 ||
      device_name(name, sizeof name, device) != 0 || driver_version(&version) != 0 ||
      cu.cuDeviceGetAttribute(&major, nobias_gpu::kComputeCapabilityMajor, device) != 0 ||
      cu.cuDeviceGetAttribute(&minor, nobias_gpu::kComputeCapabilityMinor, device) != 0) {
    *why = "cannot open device 0 and a stream on it";
    return false;
  }
  dev->name = name;
  dev->driver = std::to_string(version / 1000) + "." + std::to_string(version % 1000 / 10);
  dev->capability = major * 10 + minor;
  dev->timed = true;
  if (cu.cuDeviceGetAttribute(&clock_khz, kMemoryClock, device) == 0 &&
      cu.cuDeviceGetAttribute(&bus_bits, kBusWidth, device) == 0) {
    dev->peak_bytes_per_s = 2.0 * clock_khz * 1e3 * bus_bits / 8;  // double data rate
  }
  if (cu.cuDeviceGetAttribute(&l2, kL2Size, device) == 0) dev->l2_bytes = l2;
  return true;
}

}  // namespace gpu_check
