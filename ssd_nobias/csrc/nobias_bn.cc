// Uncentered batch normalization for MXNet 1.9, loaded with mx.library.load.
//
//   training:  m2 = mean(x^2) over every axis but 1,  y = gamma * x / sqrt(m2 + eps),
//              running_var = momentum * running_var + (1 - momentum) * m2   (in forward)
//   inference: y = gamma * x / sqrt(running_var + eps)
//
// No mean is ever subtracted and running_mean is never written, so folding the layer into the
// preceding convolution gives a weight and no bias. MXNet's lib_api does not tell an operator
// whether it runs in training mode, so the mode comes in as a one-element input computed in the
// graph (see ssd_nobias/model/norm.py): nonzero means training.
//
// This file registers the operator through lib_api, which gives MXNet its shapes, types,
// auxiliary states and gradient wiring, and the plain-NCHW CPU compute below. On the CPU,
// install.cc then replaces that compute with mkldnn_layouts.cc's, which reads and writes the
// blocked layouts of MXNet's convolutions (same arithmetic: kernels.h). On GPUs (MXNet's CUDA
// build) the compute is gpu_compute.cc's: kernels compiled at run time by NVRTC.
//
// inputs:  data (N, C, ...), gamma (C), running_mean (C), running_var (C), is_train (1)
// outputs: out (same as data), inv_rms (C): the 1/sqrt(. + eps) that was applied, for backward
// attrs:   eps, momentum, use_global_stats (0/1), fix_gamma (0/1: treat gamma as 1),
//          relu (0/1: out = max(out, 0), fused to save a pass over the data each way)
// dtypes:  float32 or float64 data with parameters of the same type, or float16 data (GPU only)
//          with float32 parameters; sums are accumulated in double.

#include <cstdint>
#include <string>
#include <unordered_map>
#include <vector>

#include "mxnet/lib_api.h"
#include "gpu_compute.h"
#include "kernels.h"
#include "operator_io.h"

using mxnet::ext::MXReturnValue;
using mxnet::ext::MXTensor;
using mxnet::ext::OpResource;
using mxnet::ext::MX_FAIL;
using mxnet::ext::MX_SUCCESS;

namespace {

typedef std::unordered_map<std::string, std::string> Attrs;

using namespace nobias::io;  // NOLINT: the operator's input and output positions
constexpr unsigned int kUnknownDim = static_cast<unsigned int>(-1);

nobias::Geometry geometry(const MXTensor& t) {
  return nobias::GeometryOf(t.shape, static_cast<int>(t.shape.size()));
}

template <typename T>
T* ptr(MXTensor& t) { return t.data<T>(); }

template <typename T>
bool training_mode(const nobias::Params& p, MXTensor& is_train) {
  return !p.use_global_stats && ptr<T>(is_train)[0] != T(0);
}

template <typename T>
void forward_impl(const nobias::Params& p, std::vector<MXTensor>* inputs,
                  std::vector<MXTensor>* outputs) {
  nobias::Forward<T, 1>(p, training_mode<T>(p, inputs->at(kIsTrain)), ptr<T>(inputs->at(kData)),
                        ptr<T>(inputs->at(kGamma)), ptr<T>(inputs->at(kRunningVar)),
                        geometry(inputs->at(kData)), ptr<T>(outputs->at(0)),
                        ptr<T>(outputs->at(1)));
}

// inputs: d_out, d_inv_rms, data, gamma, running_mean, running_var, is_train, out, inv_rms
// outputs: d_data, d_gamma, d_running_mean, d_running_var, d_is_train
template <typename T>
void backward_impl(const nobias::Params& p, std::vector<MXTensor>* inputs,
                   std::vector<MXTensor>* outputs) {
  MXTensor& data = inputs->at(kFwdIn + kData);
  const nobias::Geometry geo = geometry(data);
  std::vector<double> dgamma;
  nobias::Backward<T, 1>(p, training_mode<T>(p, inputs->at(kFwdIn + kIsTrain)),
                         ptr<T>(inputs->at(0)), ptr<T>(data),
                         ptr<T>(inputs->at(kFwdOut)),
                         ptr<T>(inputs->at(kFwdIn + kGamma)),
                         ptr<T>(inputs->at(kFwdOut + 1)), geo,
                         ptr<T>(outputs->at(kData)), &dgamma);
  T* dg = ptr<T>(outputs->at(kGamma));
  for (int64_t c = 0; c < geo.c; ++c) dg[c] = static_cast<T>(dgamma[c]);
  for (int k : {kRunningMean, kRunningVar, kIsTrain}) {
    MXTensor& grad = outputs->at(k);
    T* g = ptr<T>(grad);
    for (int64_t i = 0; i < grad.size(); ++i) g[i] = T(0);
  }
}

MXReturnValue cpu_float16_error() {
  MX_ERROR_MSG << "nobias_batch_norm: float16 data runs on GPUs only; the CPU compute takes "
               << "float32 and float64";
  return MX_FAIL;
}

MXReturnValue forward(const Attrs& attrs, std::vector<MXTensor>* inputs,
                      std::vector<MXTensor>* outputs, const OpResource& res) {
  const nobias::Params p = nobias::ParseParams(attrs);
  if (inputs->at(kData).dtype == mxnet::ext::kFloat16) return cpu_float16_error();
  if (inputs->at(kData).dtype == mxnet::ext::kFloat64) {
    forward_impl<double>(p, inputs, outputs);
  } else {
    forward_impl<float>(p, inputs, outputs);
  }
  return MX_SUCCESS;
}

MXReturnValue backward(const Attrs& attrs, std::vector<MXTensor>* inputs,
                       std::vector<MXTensor>* outputs, const OpResource& res) {
  const nobias::Params p = nobias::ParseParams(attrs);
  if (inputs->at(0).dtype == mxnet::ext::kFloat16) return cpu_float16_error();
  if (inputs->at(0).dtype == mxnet::ext::kFloat64) {
    backward_impl<double>(p, inputs, outputs);
  } else {
    backward_impl<float>(p, inputs, outputs);
  }
  return MX_SUCCESS;
}

MXReturnValue parse_attrs(const Attrs& attrs, int* num_in, int* num_out) {
  *num_in = kNumInputs;
  *num_out = kNumOutputs;
  return MX_SUCCESS;
}

// The parameters' type for data of type `data`: float32 for float16, as MXNet's BatchNorm.
int param_type(int data) { return data == mxnet::ext::kFloat16 ? mxnet::ext::kFloat32 : data; }

MXReturnValue infer_type(const Attrs& attrs, std::vector<int>* in_types,
                         std::vector<int>* out_types) {
  int data = in_types->at(kData);
  if (data == -1) {  // from the parameters: float32 ones mean float32 data
    for (int t : *in_types) data = t == -1 ? data : t;
  }
  if (data == -1) data = mxnet::ext::kFloat32;
  if (data != mxnet::ext::kFloat16 && data != mxnet::ext::kFloat32 &&
      data != mxnet::ext::kFloat64) {
    MX_ERROR_MSG << "nobias_batch_norm takes float16 (GPU only), float32 or float64 data, got "
                 << "dtype code " << data;
    return MX_FAIL;
  }
  const int param = param_type(data);
  for (int k = kGamma; k < kNumInputs; ++k) {
    int& t = in_types->at(k);
    if (t != -1 && t != param) {
      MX_ERROR_MSG << "nobias_batch_norm: input " << k << " must be "
                   << (param == mxnet::ext::kFloat64 ? "float64" : "float32") << " for "
                   << "this data (gamma and statistics are float32 for float16 data)";
      return MX_FAIL;
    }
    t = param;
  }
  in_types->at(kData) = data;
  out_types->at(0) = data;
  out_types->at(1) = param;
  return MX_SUCCESS;
}

MXReturnValue infer_shape(const Attrs& attrs, std::vector<std::vector<unsigned int>>* in_shapes,
                          std::vector<std::vector<unsigned int>>* out_shapes) {
  const std::vector<unsigned int>& data = in_shapes->at(kData);
  if (data.size() < 2) {
    MX_ERROR_MSG << "nobias_batch_norm expects data with a channel axis 1 (ndim >= 2)";
    return MX_FAIL;
  }
  const unsigned int channels = data[1];
  for (int k : {kGamma, kRunningMean, kRunningVar}) {
    std::vector<unsigned int>& s = in_shapes->at(k);
    // MXNet marks an unknown shape as ndim 0 and an unknown dimension as 0 or -1.
    const bool unknown = s.empty() || (s.size() == 1 && (s[0] == 0 || s[0] == kUnknownDim));
    if (!unknown && !(s.size() == 1 && s[0] == channels)) {
      MX_ERROR_MSG << "nobias_batch_norm: input " << k << " must have shape (" << channels << ",)";
      return MX_FAIL;
    }
    s = {channels};
  }
  in_shapes->at(kIsTrain) = {1};
  out_shapes->at(0) = data;
  out_shapes->at(1) = {channels};
  return MX_SUCCESS;
}

MXReturnValue mutate_inputs(const Attrs& attrs, std::vector<int>* indices) {
  // Both statistics are auxiliary states, as in MXNet's BatchNorm; only running_var is written.
  indices->push_back(kRunningMean);
  indices->push_back(kRunningVar);
  return MX_SUCCESS;
}

}  // namespace

REGISTER_OP(nobias_batch_norm)
    .setForward(forward, "cpu")
    .setBackward(backward, "cpu")
    .setForward(nobias_gpu::SystemForward, "gpu")
    .setBackward(nobias_gpu::SystemBackward, "gpu")
    .setParseAttrs(parse_attrs)
    .setInferType(infer_type)
    .setInferShape(infer_shape)
    .setMutateInputs(mutate_inputs);

MXReturnValue initialize(int version) {
  return version >= 10900 ? MX_SUCCESS : MX_FAIL;
}
