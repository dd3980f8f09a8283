// emu_compute: the GPU compute of nobias_batch_norm run on the CPU, on arrays laid out as the
// operator's inputs and outputs, through MXNet's lib_api types: gpu_compute.cc's host code,
// unchanged, on the emulated driver (emulated_driver.cc). tests/test_gpu_compute.py builds the
// two files and calls emu_compute.

#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

#include "emulated_driver.h"
#include "gpu_compute.h"

namespace {

// The operator's temporary space, as MXNet's allocator gives it: one buffer per call.
std::vector<double> temp_space;
void* AllocGpu(void*, int bytes) {
  temp_space.assign((bytes + sizeof(double) - 1) / sizeof(double), -1.0);  // garbage: NaN-free
  return temp_space.data();
}

}  // namespace

// Runs the GPU compute's forward (backward = 0) or backward pass on host arrays laid out as the
// operator's inputs and outputs (nobias_bn.cc). dtype: 0 float32, 1 float64, 2 float16 data
// (the parameters are float32 for float16 data). Returns 1 on success; else 0 and the reason
// in `error`. `launches` receives the kernels launched.
extern "C" int emu_compute(int backward, int num_attrs, const char* const* keys,
                           const char* const* values, int ndim, const int64_t* shape, int dtype,
                           void** inputs, void** outputs, char* error, int error_size,
                           char* launches, int launches_size) {
  using mxnet::ext::MXContext;
  using mxnet::ext::MXDType;
  using mxnet::ext::MXTensor;
  nobias_gpu::Attrs attrs;
  for (int i = 0; i < num_attrs; ++i) attrs[keys[i]] = values[i];
  const std::vector<int64_t> data_shape(shape, shape + ndim), channels = {shape[1]}, one = {1};
  const MXDType data_type = static_cast<MXDType>(dtype);
  const MXDType param_type = dtype == mxnet::ext::kFloat16 ? mxnet::ext::kFloat32 : data_type;
  // 'd': shaped and typed as the data; 'c': a channel vector; '1': the is_train flag
  auto tensors = [&](const char* kinds, void** ptrs) {
    std::vector<MXTensor> out;
    for (int i = 0; kinds[i] != '\0'; ++i) {
      const bool d = kinds[i] == 'd';
      out.emplace_back(ptrs[i], d ? data_shape : kinds[i] == 'c' ? channels : one,
                       d ? data_type : param_type, i, MXContext::GPU(emulation::DeviceOfCall()));
    }
    return out;
  };
  std::vector<MXTensor> ins = tensors(backward ? "dcdccc1dc" : "dccc1", inputs);
  std::vector<MXTensor> outs = tensors(backward ? "dccc1" : "dc", outputs);
  mxnet::ext::OpResource res(nullptr, nullptr, AllocGpu, nullptr, emulation::Stream(), nullptr,
                             nullptr, nullptr, nullptr);
  emulation::StartCall();
  const int before = mxnet::ext::MXerrorMsgs::get()->size();
  const bool ok = (backward ? nobias_gpu::Backward(emulation::Apis(), attrs, &ins, &outs, res)
                            : nobias_gpu::Forward(emulation::Apis(), attrs, &ins, &outs, res)) ==
                  mxnet::ext::MX_SUCCESS;
  std::string why = emulation::Problem();
  const int after = mxnet::ext::MXerrorMsgs::get()->size();
  if (why.empty() && after > before) why = *mxnet::ext::MXerrorMsgs::get()->get(after - 1);
  std::snprintf(error, error_size, "%s", why.c_str());
  std::snprintf(launches, launches_size, "%s", emulation::Launched().c_str());
  return ok && emulation::Problem().empty();
}
