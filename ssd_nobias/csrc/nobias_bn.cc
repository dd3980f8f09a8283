// Uncentered batch normalization for MXNet 1.9, loaded with mx.library.load.
//
//   training:  m2 = mean(x^2) over every axis but 1,  y = gamma * x / sqrt(m2 + eps),
//              running_var = momentum * running_var + (1 - momentum) * m2   (in forward)
//   inference: y = gamma * x / sqrt(running_var + eps)
//
// No mean is ever subtracted and running_mean is never written, so folding the layer into the
// preceding convolution gives a weight and no bias. MXNet's lib_api does not tell an operator
// whether it runs in training mode, so the mode comes in as a one-element input computed in the
// graph (see ssd_nobias/nn.py): nonzero means training.
//
// inputs:  data (N, C, ...), gamma (C), running_mean (C), running_var (C), is_train (1)
// outputs: out (same as data), inv_rms (C): the 1/sqrt(. + eps) that was applied, for backward
// attrs:   eps, momentum, use_global_stats (0/1), fix_gamma (0/1: treat gamma as 1),
//          relu (0/1: out = max(out, 0), fused to save a pass over the data each way)
// dtypes:  float32 or float64, the same for every input; sums are accumulated in double.

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string>
#include <unordered_map>
#include <vector>

#include "mxnet/lib_api.h"

using mxnet::ext::MXReturnValue;
using mxnet::ext::MXTensor;
using mxnet::ext::OpResource;
using mxnet::ext::MX_FAIL;
using mxnet::ext::MX_SUCCESS;

namespace {

typedef std::unordered_map<std::string, std::string> Attrs;

constexpr int kData = 0, kGamma = 1, kRunningMean = 2, kRunningVar = 3, kIsTrain = 4;
constexpr int kNumInputs = 5, kNumOutputs = 2;
constexpr unsigned int kUnknownDim = static_cast<unsigned int>(-1);

struct Params {
  double eps;
  double momentum;
  bool use_global_stats;
  bool fix_gamma;
  bool relu;

  explicit Params(const Attrs& attrs)
      : eps(get(attrs, "eps", 1e-5)),
        momentum(get(attrs, "momentum", 0.9)),
        use_global_stats(get(attrs, "use_global_stats", 0) != 0),
        fix_gamma(get(attrs, "fix_gamma", 0) != 0),
        relu(get(attrs, "relu", 0) != 0) {}

  static double get(const Attrs& attrs, const char* key, double fallback) {
    auto it = attrs.find(key);
    return it == attrs.end() ? fallback : std::stod(it->second);
  }
};

// data viewed as (outer, channels, inner): channel c of sample n is one contiguous run.
struct Layout {
  int64_t outer;
  int64_t channels;
  int64_t inner;

  explicit Layout(const MXTensor& t) : outer(t.shape[0]), channels(t.shape[1]), inner(1) {
    for (size_t i = 2; i < t.shape.size(); ++i) inner *= t.shape[i];
  }
  int64_t offset(int64_t n, int64_t c) const { return (n * channels + c) * inner; }
  double count() const { return static_cast<double>(outer * inner); }
};

template <typename T>
T* ptr(MXTensor& t) { return t.data<T>(); }

template <typename T>
bool training_mode(const Params& p, MXTensor& is_train) {
  return !p.use_global_stats && ptr<T>(is_train)[0] != T(0);
}

// sum over n and i of a[n, c, i] * b[n, c, i], counting a only where gate > 0 if a gate is given
// (the fused ReLU's output: the gradient reaches the normalization only where it was positive)
template <typename T>
double channel_dot(const T* a, const T* b, const Layout& l, int64_t c,
                   const T* gate = nullptr) {
  double total = 0.0;
  for (int64_t n = 0; n < l.outer; ++n) {
    const int64_t o = l.offset(n, c);
    T part = 0;
    if (gate == nullptr) {
#pragma omp simd reduction(+ : part)
      for (int64_t i = o; i < o + l.inner; ++i) part += a[i] * b[i];
    } else {
#pragma omp simd reduction(+ : part)
      for (int64_t i = o; i < o + l.inner; ++i) part += (gate[i] > T(0) ? a[i] : T(0)) * b[i];
    }
    total += part;
  }
  return total;
}

template <typename T>
void forward_impl(const Params& p, std::vector<MXTensor>* inputs,
                  std::vector<MXTensor>* outputs) {
  MXTensor& data = inputs->at(kData);
  const Layout l(data);
  const T* x = ptr<T>(data);
  const T* gamma = ptr<T>(inputs->at(kGamma));
  T* running_var = ptr<T>(inputs->at(kRunningVar));
  T* y = ptr<T>(outputs->at(0));
  T* inv_rms = ptr<T>(outputs->at(1));
  const bool train = training_mode<T>(p, inputs->at(kIsTrain));

#pragma omp parallel for schedule(static)
  for (int64_t c = 0; c < l.channels; ++c) {
    double second_moment = running_var[c];
    if (train) {
      second_moment = channel_dot(x, x, l, c) / l.count();
      running_var[c] = static_cast<T>(p.momentum * running_var[c] +
                                      (1.0 - p.momentum) * second_moment);
    }
    const double r = 1.0 / std::sqrt(second_moment + p.eps);
    inv_rms[c] = static_cast<T>(r);
    const T scale = static_cast<T>(p.fix_gamma ? r : gamma[c] * r);
    for (int64_t n = 0; n < l.outer; ++n) {
      const T* px = x + l.offset(n, c);
      T* py = y + l.offset(n, c);
      if (p.relu) {
#pragma omp simd
        for (int64_t i = 0; i < l.inner; ++i) py[i] = std::max(scale * px[i], T(0));
      } else {
#pragma omp simd
        for (int64_t i = 0; i < l.inner; ++i) py[i] = scale * px[i];
      }
    }
  }
}

// inputs: d_out, d_inv_rms, data, gamma, running_mean, running_var, is_train, out, inv_rms
// outputs: d_data, d_gamma, d_running_mean, d_running_var, d_is_train
template <typename T>
void backward_impl(const Params& p, std::vector<MXTensor>* inputs,
                   std::vector<MXTensor>* outputs) {
  MXTensor& data = inputs->at(kNumOutputs + kData);
  const Layout l(data);
  const T* dy = ptr<T>(inputs->at(0));
  const T* x = ptr<T>(data);
  const T* gamma = ptr<T>(inputs->at(kNumOutputs + kGamma));
  const bool train = training_mode<T>(p, inputs->at(kNumOutputs + kIsTrain));
  // with the fused ReLU, d_out reaches the normalization only where the output is positive
  const T* gate = p.relu ? ptr<T>(inputs->at(kNumOutputs + kNumInputs)) : nullptr;
  const T* inv_rms = ptr<T>(inputs->at(kNumOutputs + kNumInputs + 1));
  T* dx = ptr<T>(outputs->at(kData));
  T* dgamma = ptr<T>(outputs->at(kGamma));

#pragma omp parallel for schedule(static)
  for (int64_t c = 0; c < l.channels; ++c) {
    const double dot = channel_dot(dy, x, l, c, gate);
    const double r = inv_rms[c];
    const double g = p.fix_gamma ? 1.0 : static_cast<double>(gamma[c]);
    dgamma[c] = p.fix_gamma ? T(0) : static_cast<T>(dot * r);
    // y = g * x * r(m2) with m2 = mean(x^2): dx = g*r*dy - g*r^3*sum(dy*x)/count * x.
    // With frozen statistics r is a constant and only the first term remains.
    const T a = static_cast<T>(g * r);
    const T b = train ? static_cast<T>(g * r * r * r * dot / l.count()) : T(0);
    for (int64_t n = 0; n < l.outer; ++n) {
      const int64_t o = l.offset(n, c);
      if (gate == nullptr) {
#pragma omp simd
        for (int64_t i = o; i < o + l.inner; ++i) dx[i] = a * dy[i] - b * x[i];
      } else {
#pragma omp simd
        for (int64_t i = o; i < o + l.inner; ++i)
          dx[i] = a * (gate[i] > T(0) ? dy[i] : T(0)) - b * x[i];
      }
    }
  }
  for (int k : {kRunningMean, kRunningVar, kIsTrain}) {
    MXTensor& grad = outputs->at(k);
    T* g = ptr<T>(grad);
    for (int64_t i = 0; i < grad.size(); ++i) g[i] = T(0);
  }
}

MXReturnValue forward(const Attrs& attrs, std::vector<MXTensor>* inputs,
                      std::vector<MXTensor>* outputs, const OpResource& res) {
  const Params p(attrs);
  if (inputs->at(kData).dtype == mxnet::ext::kFloat64) {
    forward_impl<double>(p, inputs, outputs);
  } else {
    forward_impl<float>(p, inputs, outputs);
  }
  return MX_SUCCESS;
}

MXReturnValue backward(const Attrs& attrs, std::vector<MXTensor>* inputs,
                       std::vector<MXTensor>* outputs, const OpResource& res) {
  const Params p(attrs);
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

MXReturnValue infer_type(const Attrs& attrs, std::vector<int>* in_types,
                         std::vector<int>* out_types) {
  int dtype = -1;
  for (int t : *in_types) {
    if (t == -1) continue;
    if (t != mxnet::ext::kFloat32 && t != mxnet::ext::kFloat64) {
      MX_ERROR_MSG << "nobias_batch_norm supports float32 and float64, got dtype code " << t;
      return MX_FAIL;
    }
    if (dtype != -1 && t != dtype) {
      MX_ERROR_MSG << "nobias_batch_norm: data, gamma and statistics must share one dtype";
      return MX_FAIL;
    }
    dtype = t;
  }
  if (dtype == -1) dtype = mxnet::ext::kFloat32;
  for (int& t : *in_types) t = dtype;
  for (int& t : *out_types) t = dtype;
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
    .setParseAttrs(parse_attrs)
    .setInferType(infer_type)
    .setInferShape(infer_shape)
    .setMutateInputs(mutate_inputs);

MXReturnValue initialize(int version) {
  return version >= 10900 ? MX_SUCCESS : MX_FAIL;
}
