// The emulated CUDA driver and NVRTC (emulated_driver.cc), for code that drives gpu_compute.cc
// on the CPU: tests/model/csrc/gpu_emulation.cc and the GPU check's emulated device.

#ifndef SSD_NOBIAS_TESTS_EMULATED_DRIVER_H_
#define SSD_NOBIAS_TESTS_EMULATED_DRIVER_H_

#include <string>

#include "gpu_api.h"

namespace emulation {

// The driver and NVRTC tables to hand to gpu_compute.cc.
const nobias_gpu::Apis& Apis();
// The one stream launches are accepted on (the operator's).
nobias_gpu::CUstream Stream();
// The device whose primary context launches must run in (emu_reset sets it).
int DeviceOfCall();
// Forget the last call's launches and problem.
void StartCall();
// The first thing a GPU would have refused since StartCall ("" if nothing).
std::string Problem();
// The kernels launched since StartCall, "name:blocksxthreads;...".
std::string Launched();

}  // namespace emulation

#endif  // SSD_NOBIAS_TESTS_EMULATED_DRIVER_H_
