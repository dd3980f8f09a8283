// The device the GPU check runs on: the driver and NVRTC tables gpu_compute.cc takes, plus the
// memory, stream and event calls only the check makes. real_device.cc opens the machine's GPU
// through its libcuda; tests/model/csrc/emulated_device.cc opens the CPU emulation.

#ifndef SSD_NOBIAS_GPU_CHECK_DEVICE_H_
#define SSD_NOBIAS_GPU_CHECK_DEVICE_H_

#include <cstddef>
#include <string>

#include "gpu_api.h"

namespace gpu_check {

using nobias_gpu::CUdeviceptr;
using nobias_gpu::CUresult;
using nobias_gpu::CUstream;
typedef struct CUevent_st* CUevent;

struct DeviceApi {
  CUresult (*cuMemAlloc)(CUdeviceptr* ptr, size_t bytes);
  CUresult (*cuMemFree)(CUdeviceptr ptr);
  CUresult (*cuMemcpyHtoD)(CUdeviceptr dst, const void* src, size_t bytes);
  CUresult (*cuMemcpyDtoH)(void* dst, CUdeviceptr src, size_t bytes);
  CUresult (*cuMemcpyDtoDAsync)(CUdeviceptr dst, CUdeviceptr src, size_t bytes,
                                CUstream stream);
  CUresult (*cuStreamSynchronize)(CUstream stream);
  CUresult (*cuEventCreate)(CUevent* event, unsigned int flags);
  CUresult (*cuEventRecord)(CUevent event, CUstream stream);
  CUresult (*cuEventSynchronize)(CUevent event);
  CUresult (*cuEventElapsedTime)(float* ms, CUevent start, CUevent end);
  CUresult (*cuEventDestroy)(CUevent event);
};

struct Device {
  nobias_gpu::Apis apis;  // what gpu_compute.cc launches through
  DeviceApi api;
  CUstream stream = nullptr;  // the operator's stream, as MXNet would give it
  bool timed = false;         // events measure GPU time (not in the emulation)
  std::string name, driver;   // e.g. "NVIDIA H200", "13.0"
  int capability = 0;         // major * 10 + minor
  double peak_bytes_per_s = 0;  // memory clock x bus width, 0 if the driver does not say
  double l2_bytes = 0;
};

// Device 0 with its primary context current on this thread (the context gpu_compute.cc launches
// in); false with the reason in `why` if there is none.
bool OpenDevice(Device* device, std::string* why);

}  // namespace gpu_check

#endif  // SSD_NOBIAS_GPU_CHECK_DEVICE_H_
