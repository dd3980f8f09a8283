// The CUDA driver and NVRTC functions the GPU compute calls, as tables of function pointers.
//
// gpu_system.cc fills them from the libcuda and libnvrtc that MXNet's CUDA build has loaded (no
// CUDA header or library is needed to build this project); the tests fill them with an
// emulation. The types are the C API's own, declared opaquely.

#ifndef SSD_NOBIAS_GPU_API_H_
#define SSD_NOBIAS_GPU_API_H_

#include <cstddef>

namespace nobias_gpu {

typedef int CUresult;  // 0: CUDA_SUCCESS
typedef int CUdevice;
typedef unsigned long long CUdeviceptr;
typedef struct CUctx_st* CUcontext;
typedef struct CUmod_st* CUmodule;
typedef struct CUfunc_st* CUfunction;
typedef struct CUstream_st* CUstream;

typedef int nvrtcResult;  // 0: NVRTC_SUCCESS
typedef struct _nvrtcProgram* nvrtcProgram;

// cuDeviceGetAttribute's CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR and _MINOR
constexpr int kComputeCapabilityMajor = 75;
constexpr int kComputeCapabilityMinor = 76;

struct CudaApi {
  CUresult (*cuInit)(unsigned int flags);
  CUresult (*cuCtxGetCurrent)(CUcontext* ctx);
  CUresult (*cuCtxSetCurrent)(CUcontext ctx);
  CUresult (*cuCtxGetDevice)(CUdevice* device);
  CUresult (*cuDeviceGet)(CUdevice* device, int ordinal);
  CUresult (*cuDeviceGetAttribute)(int* value, int attribute, CUdevice device);
  CUresult (*cuDevicePrimaryCtxRetain)(CUcontext* ctx, CUdevice device);
  CUresult (*cuModuleLoadData)(CUmodule* module, const void* image);
  CUresult (*cuModuleGetFunction)(CUfunction* function, CUmodule module, const char* name);
  CUresult (*cuLaunchKernel)(CUfunction f, unsigned int grid_x, unsigned int grid_y,
                             unsigned int grid_z, unsigned int block_x, unsigned int block_y,
                             unsigned int block_z, unsigned int shared_bytes, CUstream stream,
                             void** params, void** extra);
  CUresult (*cuMemsetD8Async)(CUdeviceptr ptr, unsigned char value, size_t count,
                              CUstream stream);
  CUresult (*cuGetErrorString)(CUresult error, const char** text);
};

struct NvrtcApi {
  nvrtcResult (*nvrtcCreateProgram)(nvrtcProgram* prog, const char* source, const char* name,
                                    int num_headers, const char* const* headers,
                                    const char* const* include_names);
  nvrtcResult (*nvrtcCompileProgram)(nvrtcProgram prog, int num_options,
                                     const char* const* options);
  nvrtcResult (*nvrtcGetProgramLogSize)(nvrtcProgram prog, size_t* size);
  nvrtcResult (*nvrtcGetProgramLog)(nvrtcProgram prog, char* log);
  nvrtcResult (*nvrtcGetPTXSize)(nvrtcProgram prog, size_t* size);
  nvrtcResult (*nvrtcGetPTX)(nvrtcProgram prog, char* ptx);
  nvrtcResult (*nvrtcDestroyProgram)(nvrtcProgram* prog);
  const char* (*nvrtcGetErrorString)(nvrtcResult result);
};

struct Apis {
  const CudaApi* cuda;
  const NvrtcApi* nvrtc;
};

}  // namespace nobias_gpu

#endif  // SSD_NOBIAS_GPU_API_H_
