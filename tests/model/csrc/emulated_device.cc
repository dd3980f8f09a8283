// The GPU check's device on the CPU: the emulated driver (emulated_driver.cc) with host memory
// as device memory. Events measure nothing (Device::timed is false).

#include <cstdlib>
#include <cstring>
#include <string>

#include "device.h"
#include "emulated_driver.h"

namespace gpu_check {
namespace {

CUresult MemAlloc(CUdeviceptr* ptr, size_t bytes) {
  *ptr = reinterpret_cast<CUdeviceptr>(std::malloc(bytes > 0 ? bytes : 1));
  return *ptr == 0 ? 2 : 0;  // CUDA_ERROR_OUT_OF_MEMORY
}
CUresult MemFree(CUdeviceptr ptr) {
  std::free(reinterpret_cast<void*>(ptr));
  return 0;
}
CUresult HtoD(CUdeviceptr dst, const void* src, size_t bytes) {
  std::memcpy(reinterpret_cast<void*>(dst), src, bytes);
  return 0;
}
CUresult DtoH(void* dst, CUdeviceptr src, size_t bytes) {
  std::memcpy(dst, reinterpret_cast<const void*>(src), bytes);
  return 0;
}
CUresult DtoDAsync(CUdeviceptr dst, CUdeviceptr src, size_t bytes, CUstream) {
  std::memcpy(reinterpret_cast<void*>(dst), reinterpret_cast<const void*>(src), bytes);
  return 0;
}
CUresult StreamSynchronize(CUstream) { return 0; }
CUresult EventCreate(CUevent* event, unsigned int) {
  *event = nullptr;
  return 0;
}
CUresult EventRecord(CUevent, CUstream) { return 0; }
CUresult EventSynchronize(CUevent) { return 0; }
CUresult EventElapsedTime(float* ms, CUevent, CUevent) {
  *ms = 0;
  return 0;
}
CUresult EventDestroy(CUevent) { return 0; }

}  // namespace

bool OpenDevice(Device* dev, std::string*) {
  dev->apis = emulation::Apis();
  dev->api = {MemAlloc, MemFree, HtoD, DtoH, DtoDAsync, StreamSynchronize, EventCreate,
              EventRecord, EventSynchronize, EventElapsedTime, EventDestroy};
  dev->stream = emulation::Stream();
  dev->name = "emulated on the CPU (tests/model/csrc/emulated_driver.cc)";
  dev->driver = "emulated";
  dev->capability = 50;
  return true;
}

}  // namespace gpu_check
