// How the GPU compute runs gpu_kernels.cuh: compiled once per process by NVRTC, loaded once per
// CUDA context, launched on the stream MXNet gives the operator, with one temp-space allocation
// per call. Training or inference is decided by the kernels from the is_train input in device
// memory, so the host never waits for the GPU.

#include "gpu_compute.h"

#include <algorithm>
#include <climits>
#include <cstdlib>
#include <map>
#include <mutex>
#include <stdexcept>
#include <tuple>
#include <utility>

#include "gpu_args.h"
#include "kernels.h"
#include "operator_io.h"
// kKernelSource and kArgsSource: gpu_kernels.cuh and gpu_args.h as strings, written by native.py
#include "gpu_sources.inc"

namespace nobias_gpu {

const char kArch[] = "compute_50";
const char kArchEnv[] = "SSD_NOBIAS_CUDA_ARCH";

namespace {

using namespace nobias::io;  // NOLINT: the operator's input and output positions

enum Kernel { kForwardDots, kFinalizeForward, kScale, kBackwardDots, kFinalizeBackward,
              kInputGrad, kNumKernels };
const char* const kKernelNames[kNumKernels] = {"forward_dots", "finalize_forward", "scale",
                                               "backward_dots", "finalize_backward",
                                               "input_grad"};
enum DType { kF16, kF32, kF64, kNumDTypes };
const char* const kDTypeNames[kNumDTypes] = {"f16", "f32", "f64"};

constexpr long long kValuesPerThread = 8;  // per block: up to 2048 values of a run

class GpuError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

void Check(const CudaApi& cu, CUresult status, const char* call) {
  if (status == 0) return;
  const char* text = nullptr;
  if (cu.cuGetErrorString(status, &text) != 0 || text == nullptr) text = "unknown error";
  throw GpuError(std::string(call) + " failed: " + text + " (CUresult " +
                 std::to_string(status) + ")");
}

struct Functions {
  CUfunction of[kNumDTypes][kNumKernels];
};

// The PTX (compiled once per process and architecture) and each CUDA context's module. MXNet
// calls the compute from several worker threads per GPU; each GPU has its own context.
class Modules {
 public:
  const Functions& For(const Apis& apis, CUcontext ctx, const std::string& arch) {
    std::lock_guard<std::mutex> lock(mutex_);
    const auto key = std::make_tuple(apis.cuda, ctx, arch);
    auto found = functions_.find(key);
    if (found != functions_.end()) return found->second;
    const std::string& ptx = Ptx(*apis.nvrtc, arch);
    const CudaApi& cu = *apis.cuda;
    CUmodule module = nullptr;
    Check(cu, cu.cuModuleLoadData(&module, ptx.c_str()), "cuModuleLoadData");
    Functions fns;
    for (int t = 0; t < kNumDTypes; ++t) {
      for (int k = 0; k < kNumKernels; ++k) {
        const std::string name = std::string("nobias_") + kKernelNames[k] + "_" + kDTypeNames[t];
        Check(cu, cu.cuModuleGetFunction(&fns.of[t][k], module, name.c_str()),
              "cuModuleGetFunction");
      }
    }
    return functions_[key] = fns;
  }

  // Why the kernels do not compile for `arch`; empty if they do (and the PTX is kept for For).
  std::string CompileError(const NvrtcApi& nvrtc, const std::string& arch) {
    std::lock_guard<std::mutex> lock(mutex_);
    try {
      Ptx(nvrtc, arch);
    } catch (const GpuError& err) {
      return err.what();
    }
    return "";
  }

 private:
  // Compiled at the first call for `arch`; the caller holds mutex_.
  const std::string& Ptx(const NvrtcApi& nvrtc, const std::string& arch) {
    std::string& ptx = ptx_[arch];
    if (ptx.empty()) {
      std::string log;
      if (!CompilePtx(nvrtc, arch, &ptx, &log)) {
        ptx.clear();
        throw GpuError("compiling the nobias_batch_norm GPU kernels for " + arch +
                       " with NVRTC failed: " + log + " (" + kArchEnv +
                       "=compute_XY chooses another architecture)");
      }
    }
    return ptx;
  }

  std::mutex mutex_;
  std::map<std::string, std::string> ptx_;
  std::map<std::tuple<const CudaApi*, CUcontext, std::string>, Functions> functions_;
};

Modules& AllModules() {
  static Modules modules;
  return modules;
}

// The context to launch in: the calling thread's if it is on `device`, else that device's
// primary context (the runtime API's, which MXNet's streams belong to), made current.
CUcontext ContextFor(const CudaApi& cu, int device) {
  CUdevice wanted = 0, current = 0;
  Check(cu, cu.cuDeviceGet(&wanted, device), "cuDeviceGet");
  CUcontext ctx = nullptr;
  Check(cu, cu.cuCtxGetCurrent(&ctx), "cuCtxGetCurrent");
  if (ctx != nullptr && cu.cuCtxGetDevice(&current) == 0 && current == wanted) return ctx;
  Check(cu, cu.cuDevicePrimaryCtxRetain(&ctx, wanted), "cuDevicePrimaryCtxRetain");
  Check(cu, cu.cuCtxSetCurrent(ctx), "cuCtxSetCurrent");
  return ctx;
}

DType DTypeOf(const MXTensor& t) {
  switch (t.dtype) {
    case mxnet::ext::kFloat16: return kF16;
    case mxnet::ext::kFloat32: return kF32;
    case mxnet::ext::kFloat64: return kF64;
    default: throw GpuError("nobias_batch_norm takes float16, float32 or float64 data");
  }
}

// Grid of runs * chunks blocks (gpu_kernels.cuh); its sizes go into `k`.
struct Grid {
  unsigned int blocks, threads;
};

Grid RunGrid(const nobias::Geometry& geo, KernelArgs* k) {
  unsigned int threads = 32;
  while (threads < static_cast<unsigned int>(kMaxThreads) && threads < geo.inner) threads *= 2;
  k->n = geo.n;
  k->c = geo.c;
  k->inner = geo.inner;
  k->chunk = threads * kValuesPerThread;
  k->chunks = geo.inner > 0 ? (geo.inner + k->chunk - 1) / k->chunk : 1;
  const long long blocks = geo.n * geo.c * k->chunks;
  if (blocks > INT_MAX) throw GpuError("nobias_batch_norm: input too large for one grid");
  return {static_cast<unsigned int>(blocks), threads};
}

Grid ChannelGrid(const KernelArgs& k) {
  return {static_cast<unsigned int>((k.c + kMaxThreads - 1) / kMaxThreads),
          static_cast<unsigned int>(kMaxThreads)};
}

// One temp-space allocation (MXNet's allocator keeps a single buffer per operator) holding
// the block sums and two per-channel coefficients.
void AllocateTemp(const OpResource& res, unsigned int blocks, long long channels,
                  size_t param_bytes, KernelArgs* k) {
  const size_t coef_bytes = (channels * param_bytes + 7) / 8 * 8;
  const size_t bytes = blocks * sizeof(double) + 2 * coef_bytes;
  if (bytes > static_cast<size_t>(INT_MAX)) {
    throw GpuError("nobias_batch_norm: temporary space over 2 GiB");
  }
  char* base = static_cast<char*>(res.alloc_gpu(static_cast<int>(bytes)));
  if (base == nullptr) throw GpuError("nobias_batch_norm: MXNet gave no temporary space");
  k->partial = reinterpret_cast<double*>(base);
  k->coef_a = base + blocks * sizeof(double);
  k->coef_b = base + blocks * sizeof(double) + coef_bytes;
}

class Launcher {
 public:
  Launcher(const Apis& apis, const MXTensor& data, const OpResource& res)
      : cu_(*apis.cuda), stream_(static_cast<CUstream>(res.get_cuda_stream())) {
    const CUcontext ctx = ContextFor(cu_, data.ctx.dev_id);
    CUdevice device = 0;
    Check(cu_, cu_.cuDeviceGet(&device, data.ctx.dev_id), "cuDeviceGet");
    fns_ = AllModules().For(apis, ctx, ArchFor(cu_, device)).of[DTypeOf(data)];
  }

  void Run(Kernel kernel, Grid grid, KernelArgs* k) const {
    if (grid.blocks == 0) return;
    void* params[] = {k};
    Check(cu_, cu_.cuLaunchKernel(fns_[kernel], grid.blocks, 1, 1, grid.threads, 1, 1, 0,
                                  stream_, params, nullptr),
          kKernelNames[kernel]);
  }

  void Zero(MXTensor& t) const {
    Check(cu_, cu_.cuMemsetD8Async(reinterpret_cast<CUdeviceptr>(t.data_ptr), 0,
                                   t.size() * ParamBytes(t), stream_),
          "cuMemsetD8Async");
  }

  static size_t ParamBytes(const MXTensor& t) {
    return t.dtype == mxnet::ext::kFloat64 ? sizeof(double) : sizeof(float);
  }

 private:
  const CudaApi& cu_;
  CUstream stream_;
  const CUfunction* fns_ = nullptr;  // this dtype's kernels
};

// The kernels' settings, sizes, grid (into `grid`) and temporary space for `data`.
KernelArgs Prepare(const nobias::Params& p, const MXTensor& data, const MXTensor& gamma,
                   const OpResource& res, Grid* grid) {
  KernelArgs k = {};
  k.eps = p.eps;
  k.momentum = p.momentum;
  k.use_global_stats = p.use_global_stats;
  k.fix_gamma = p.fix_gamma;
  k.relu = p.relu;
  *grid = RunGrid(nobias::GeometryOf(data.shape, static_cast<int>(data.shape.size())), &k);
  AllocateTemp(res, grid->blocks, k.c, Launcher::ParamBytes(gamma), &k);
  return k;
}

void RunForward(const Apis& apis, const Attrs& attrs, std::vector<MXTensor>* in,
                std::vector<MXTensor>* out, const OpResource& res) {
  MXTensor& data = in->at(kData);
  const Launcher launch(apis, data, res);
  const nobias::Params p = nobias::ParseParams(attrs);
  Grid grid;
  KernelArgs k = Prepare(p, data, in->at(kGamma), res, &grid);
  k.a = k.b = data.data_ptr;
  k.out = out->at(0).data_ptr;
  k.gamma = in->at(kGamma).data_ptr;
  k.running_var = in->at(kRunningVar).data_ptr;
  k.is_train = in->at(kIsTrain).data_ptr;
  k.inv_rms = out->at(1).data_ptr;
  if (!p.use_global_stats) launch.Run(kForwardDots, grid, &k);  // else never training
  launch.Run(kFinalizeForward, ChannelGrid(k), &k);
  launch.Run(kScale, grid, &k);
}

// inputs: d_out, d_inv_rms, data, gamma, running_mean, running_var, is_train, out, inv_rms
// outputs: d_data, d_gamma, d_running_mean, d_running_var, d_is_train
void RunBackward(const Apis& apis, const Attrs& attrs, std::vector<MXTensor>* in,
                 std::vector<MXTensor>* out, const OpResource& res) {
  MXTensor& data = in->at(kFwdIn + kData);
  const Launcher launch(apis, data, res);
  const nobias::Params p = nobias::ParseParams(attrs);
  Grid grid;
  KernelArgs k = Prepare(p, data, in->at(kFwdIn + kGamma), res, &grid);
  k.a = in->at(0).data_ptr;
  k.b = data.data_ptr;
  k.gate = p.relu ? in->at(kFwdOut).data_ptr : nullptr;
  k.out = out->at(kData).data_ptr;
  k.gamma = in->at(kFwdIn + kGamma).data_ptr;
  k.is_train = in->at(kFwdIn + kIsTrain).data_ptr;
  k.inv_rms = in->at(kFwdOut + 1).data_ptr;
  k.dgamma = out->at(kGamma).data_ptr;
  launch.Run(kBackwardDots, grid, &k);
  launch.Run(kFinalizeBackward, ChannelGrid(k), &k);
  launch.Run(kInputGrad, grid, &k);
  for (int aux : {kRunningMean, kRunningVar, kIsTrain}) launch.Zero(out->at(aux));
}

template <typename Body>
MXReturnValue Guarded(Body body) {
  try {
    body();
  } catch (const GpuError& err) {
    MX_ERROR_MSG << err.what() << " (model.norm_impl: ops, or SSD_NOBIAS_IMPL=ops, runs the "
                 << "layer from MXNet's own operators instead)";
    return mxnet::ext::MX_FAIL;
  }
  return mxnet::ext::MX_SUCCESS;
}

}  // namespace

std::string ArchFor(const CudaApi& cu, CUdevice device) {
  const char* forced = std::getenv(kArchEnv);
  if (forced != nullptr && *forced != '\0') return forced;
  int major = 0, minor = 0;
  Check(cu, cu.cuDeviceGetAttribute(&major, kComputeCapabilityMajor, device),
        "cuDeviceGetAttribute");
  Check(cu, cu.cuDeviceGetAttribute(&minor, kComputeCapabilityMinor, device),
        "cuDeviceGetAttribute");
  const int floor = std::atoi(kArch + std::string("compute_").size());  // kArch's number
  return "compute_" + std::to_string(std::max(major * 10 + minor, floor));
}

bool CompilePtx(const NvrtcApi& nv, const std::string& arch, std::string* ptx,
                std::string* log) {
  nvrtcProgram prog = nullptr;
  const char* headers[] = {kArgsSource};
  const char* names[] = {"gpu_args.h"};
  nvrtcResult status = nv.nvrtcCreateProgram(&prog, kKernelSource, "gpu_kernels.cuh", 1,
                                             headers, names);
  if (status != 0) {
    *log = std::string("nvrtcCreateProgram: ") + nv.nvrtcGetErrorString(status);
    return false;
  }
  const std::string arch_option = "--gpu-architecture=" + arch;
  const char* options[] = {arch_option.c_str(), "--std=c++14"};
  status = nv.nvrtcCompileProgram(prog, 2, options);
  size_t size = 0;
  log->clear();
  if (nv.nvrtcGetProgramLogSize(prog, &size) == 0 && size > 1) {
    log->resize(size);
    nv.nvrtcGetProgramLog(prog, &(*log)[0]);
    log->resize(size - 1);
  }
  if (status == 0 && nv.nvrtcGetPTXSize(prog, &size) == 0) {
    ptx->resize(size);
    status = nv.nvrtcGetPTX(prog, &(*ptx)[0]);
    ptx->resize(size > 0 ? size - 1 : 0);  // without the terminating NUL
  }
  if (status != 0) {
    *log = std::string(nv.nvrtcGetErrorString(status)) + (log->empty() ? "" : ": ") + *log;
  }
  nv.nvrtcDestroyProgram(&prog);
  return status == 0;
}

std::string KernelCompileError(const Apis& apis) {
  try {
    CUdevice device = 0;
    Check(*apis.cuda, apis.cuda->cuDeviceGet(&device, 0), "cuDeviceGet");
    return AllModules().CompileError(*apis.nvrtc, ArchFor(*apis.cuda, device));
  } catch (const GpuError& err) {
    return err.what();
  }
}

MXReturnValue Forward(const Apis& apis, const Attrs& attrs, std::vector<MXTensor>* inputs,
                      std::vector<MXTensor>* outputs, const OpResource& res) {
  return Guarded([&] { RunForward(apis, attrs, inputs, outputs, res); });
}

MXReturnValue Backward(const Apis& apis, const Attrs& attrs, std::vector<MXTensor>* inputs,
                       std::vector<MXTensor>* outputs, const OpResource& res) {
  return Guarded([&] { RunBackward(apis, attrs, inputs, outputs, res); });
}

}  // namespace nobias_gpu
