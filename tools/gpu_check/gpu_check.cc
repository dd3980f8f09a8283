// The GPU check: nobias_batch_norm's GPU compute (gpu_compute.cc, unchanged, and the kernels it
// compiles with NVRTC) run on a device without MXNet, against the CPU operator's arithmetic
// (kernels.h) in this same program, with the tolerances of tests/test_gpu_compute.py; every
// device pass is run twice and must give the same bits. With --time, forward and backward of
// the SSD model's layers are timed (CUDA events) next to the device's memory bandwidth.
//
//   gpu_check [--quick] [--time] [--no-reference] [--shapes FILE] [--batch N] [--max-values N]
//             [--json FILE]
//
// --quick: a few small cases (for compute-sanitizer); --shapes: the SSD layers (ssd_shapes.txt),
// checked and timed, at another --batch if given, those over --max-values values skipped;
// --no-reference: the device passes and their digest only (a second run's bits). Exit status
// 0 when every case passed. Run by tools/gpu_check/run.sh (make gpu-check);
// tests/test_gpu_check.py builds it on the emulated driver.

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <memory>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include "device.h"
#include "gpu_compute.h"
#include "kernels.h"

namespace gpu_check {
namespace {

using mxnet::ext::MXTensor;
using Bytes = std::vector<unsigned char>;

enum class DType { kF16, kF32, kF64 };
const char* Name(DType t) { return t == DType::kF16 ? "float16" : t == DType::kF32 ? "float32"
                                                                                 : "float64"; }
size_t Size(DType t) { return t == DType::kF16 ? 2 : t == DType::kF32 ? 4 : 8; }
DType ParamType(DType t) { return t == DType::kF64 ? DType::kF64 : DType::kF32; }
mxnet::ext::MXDType MxType(DType t) {
  return t == DType::kF16 ? mxnet::ext::kFloat16 : t == DType::kF32 ? mxnet::ext::kFloat32
                                                                    : mxnet::ext::kFloat64;
}

// IEEE half <-> float on the host, rounding to nearest even as the GPU's cvt.rn.
float HalfToFloat(uint16_t h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000) << 16, exp = (h >> 10) & 0x1f,
                 man = h & 0x3ff;
  uint32_t bits;
  if (exp == 0) {  // zero or subnormal: man * 2^-24
    const float v = std::ldexp(static_cast<float>(man), -24);
    return sign ? -v : v;
  }
  bits = sign | (exp == 31 ? 0x7f800000 | (man << 13) : ((exp + 112) << 23) | (man << 13));
  float f;
  std::memcpy(&f, &bits, sizeof f);
  return f;
}
uint16_t FloatToHalf(float f) {
  uint32_t x;
  std::memcpy(&x, &f, sizeof x);
  const uint16_t sign = (x >> 16) & 0x8000;
  const uint32_t mag = x & 0x7fffffff;
  if (mag >= 0x7f800000) return sign | (mag > 0x7f800000 ? 0x7e00 : 0x7c00);  // NaN, inf
  if (mag >= 0x477ff000) return sign | 0x7c00;  // rounds to beyond 65504
  if (mag < 0x38800000) {  // below 2^-14: a multiple of 2^-24, rounded to even by rint
    float a;
    std::memcpy(&a, &mag, sizeof a);
    return sign | static_cast<uint16_t>(std::nearbyint(a * 16777216.0f));
  }
  const uint32_t e = mag - 0x38000000;  // exponent rebiased from 127 to 15
  return sign | static_cast<uint16_t>((e + 0xfff + ((e >> 13) & 1)) >> 13);
}

double Get(const Bytes& b, DType t, size_t i) {
  switch (t) {
    case DType::kF16: { uint16_t h; std::memcpy(&h, &b[2 * i], 2); return HalfToFloat(h); }
    case DType::kF32: { float f; std::memcpy(&f, &b[4 * i], 4); return f; }
    default: { double d; std::memcpy(&d, &b[8 * i], 8); return d; }
  }
}
void Put(Bytes* b, DType t, size_t i, double v) {
  switch (t) {
    case DType::kF16: { const uint16_t h = FloatToHalf(static_cast<float>(v));
                        std::memcpy(&(*b)[2 * i], &h, 2); break; }
    case DType::kF32: { const float f = static_cast<float>(v); std::memcpy(&(*b)[4 * i], &f, 4);
                        break; }
    default: std::memcpy(&(*b)[8 * i], &v, 8);
  }
}

// One layer's pass: its settings and inputs.
struct Case {
  std::string name;
  std::vector<int64_t> shape;
  DType dtype;
  bool train;
  nobias_gpu::Attrs attrs;
  nobias::Params params() const { return nobias::ParseParams(attrs); }
  int64_t values() const {
    int64_t n = 1;
    for (int64_t d : shape) n *= d;
    return n;
  }
  int64_t channels() const { return shape[1]; }
};

struct Inputs {
  Bytes x, dy, gamma, mean, var, flag;
};

// What a pass gives: forward y, inv_rms, running_var and running_mean after it; backward dx,
// dgamma, and the zeroed gradients of the statistics and the flag.
struct Outputs {
  Bytes y, inv_rms, var, mean, dx, dgamma, aux_grads;
};

// A uniform in (0, 1) from (seed, i) alone (splitmix64), so that threads draw in any order.
double Uniform(uint64_t seed, uint64_t i) {
  uint64_t z = seed * 0x9e3779b97f4a7c15ull + i * 0xbf58476d1ce4e5b9ull + 0x94d049bb133111ebull;
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  z ^= z >> 31;
  return (static_cast<double>(z >> 11) + 0.5) / 9007199254740992.0;  // 2^53
}
double Normal(uint64_t seed, uint64_t i) {  // Box-Muller
  return std::sqrt(-2 * std::log(Uniform(seed, 2 * i))) *
         std::cos(6.283185307179586 * Uniform(seed, 2 * i + 1));
}

// The operator's inputs as tests/test_gpu_compute.py draws them (normal x around 0.3, gamma and
// running_var in [0.5, 2], normal dy), from `seed`.
Inputs Draw(const Case& c, uint64_t seed) {
  const DType p = ParamType(c.dtype);
  const int64_t n = c.values(), ch = c.channels();
  Inputs in{Bytes(n * Size(c.dtype)), Bytes(n * Size(c.dtype)), Bytes(ch * Size(p)),
            Bytes(ch * Size(p)), Bytes(ch * Size(p)), Bytes(Size(p))};
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < n; ++i) {
    Put(&in.x, c.dtype, i, 0.3 + 1.5 * Normal(seed, i));
    Put(&in.dy, c.dtype, i, Normal(seed + 1, i));
  }
  for (int64_t i = 0; i < ch; ++i) {
    Put(&in.gamma, p, i, 0.5 + 1.5 * Uniform(seed + 2, i));
    Put(&in.mean, p, i, 0.0);
    Put(&in.var, p, i, 0.5 + 1.5 * Uniform(seed + 3, i));
  }
  Put(&in.flag, p, 0, c.train ? 1.0 : 0.0);
  return in;
}

// ---- the CPU operator's arithmetic --------------------------------------------------------

template <typename T>
std::vector<T> As(const Bytes& b, DType t, size_t n) {
  std::vector<T> v(n);
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < static_cast<int64_t>(n); ++i) v[i] = static_cast<T>(Get(b, t, i));
  return v;
}

// kernels.h in T (float for float32 data, double for float64, and for float16 data on its
// float16 values, as a reference); the results as double.
template <typename T>
void CpuPass(const Case& c, const Inputs& in, std::vector<double>* out) {
  const DType p = ParamType(c.dtype);
  const size_t n = c.values(), ch = c.channels();
  const nobias::Params params = c.params();
  const bool train = !params.use_global_stats && c.train;
  const nobias::Geometry geo = nobias::GeometryOf(c.shape, static_cast<int>(c.shape.size()));
  std::vector<T> x = As<T>(in.x, c.dtype, n), dy = As<T>(in.dy, c.dtype, n),
                 gamma = As<T>(in.gamma, p, ch), var = As<T>(in.var, p, ch), y(n), inv_rms(ch),
                 dx(n);
  std::vector<double> dgamma;
  nobias::Forward<T, 1>(params, train, x.data(), gamma.data(), var.data(), geo, y.data(),
                        inv_rms.data());
  nobias::Backward<T, 1>(params, train, dy.data(), x.data(), y.data(), gamma.data(),
                         inv_rms.data(), geo, dx.data(), &dgamma);
  out[0].assign(y.begin(), y.end());
  out[1].assign(inv_rms.begin(), inv_rms.end());
  out[2].assign(var.begin(), var.end());
  out[3].assign(dx.begin(), dx.end());
  out[4] = dgamma;
}

// ---- the device --------------------------------------------------------------------------

void Check(const Device& dev, CUresult status, const char* what) {
  if (status == 0) return;
  const char* text = nullptr;
  dev.apis.cuda->cuGetErrorString(status, &text);
  throw std::runtime_error(std::string(what) + " failed: " + (text ? text : "?"));
}

class Buffer {
 public:
  Buffer(const Device& dev, size_t bytes) : dev_(dev), bytes_(bytes) {
    Check(dev_, dev_.api.cuMemAlloc(&ptr_, bytes > 0 ? bytes : 1), "cuMemAlloc");
  }
  Buffer(const Device& dev, const Bytes& host) : Buffer(dev, host.size()) { Upload(host); }
  ~Buffer() { dev_.api.cuMemFree(ptr_); }
  Buffer(const Buffer&) = delete;
  Buffer& operator=(const Buffer&) = delete;
  void Upload(const Bytes& host) {
    Check(dev_, dev_.api.cuMemcpyHtoD(ptr_, host.data(), host.size()), "cuMemcpyHtoD");
  }
  Bytes Download() const {
    Bytes host(bytes_);
    Check(dev_, dev_.api.cuMemcpyDtoH(host.data(), ptr_, bytes_), "cuMemcpyDtoH");
    return host;
  }
  void* get() const { return reinterpret_cast<void*>(ptr_); }
  CUdeviceptr ptr() const { return ptr_; }

 private:
  const Device& dev_;
  size_t bytes_;
  CUdeviceptr ptr_ = 0;
};

// The operator's temporary space, kept between calls as MXNet's allocator keeps it.
class TempSpace {
 public:
  explicit TempSpace(const Device& dev) : dev_(dev) {}
  void* Get(int bytes) {
    if (!buffer_ || bytes > capacity_) {
      Check(dev_, dev_.api.cuStreamSynchronize(dev_.stream), "cuStreamSynchronize");
      buffer_.reset(new Buffer(dev_, bytes));
      capacity_ = bytes;
    }
    return buffer_->get();
  }

 private:
  const Device& dev_;
  std::unique_ptr<Buffer> buffer_;
  int capacity_ = 0;
};

// A layer's arrays on the device and its forward and backward calls through gpu_compute.cc.
class DeviceLayer {
 public:
  DeviceLayer(const Device& dev, const Case& c, const Inputs& in, TempSpace* temp)
      : dev_(dev), case_(c), temp_(temp), x_(dev, in.x), dy_(dev, in.dy), gamma_(dev, in.gamma),
        mean_(dev, in.mean), var_(dev, in.var), flag_(dev, in.flag),
        y_(dev, in.x.size()), dx_(dev, in.x.size()), inv_rms_(dev, in.gamma.size()),
        d_inv_rms_(dev, Bytes(in.gamma.size())), dgamma_(dev, in.gamma.size()),
        dmean_(dev, in.gamma.size()), dvar_(dev, in.gamma.size()), dflag_(dev, in.flag.size()) {
    Poison();
  }

  // NaN (all bits set) in every output: one the compute leaves unwritten cannot pass.
  void Poison() {
    for (Buffer* b : {&y_, &dx_, &inv_rms_, &dgamma_, &dmean_, &dvar_, &dflag_}) {
      Bytes poison = b->Download();
      std::fill(poison.begin(), poison.end(), 0xff);
      b->Upload(poison);
    }
  }

  void Forward() { Call(false); }
  void Backward() { Call(true); }

  Outputs Results() const {
    Check(dev_, dev_.api.cuStreamSynchronize(dev_.stream), "cuStreamSynchronize");
    Outputs out{y_.Download(), inv_rms_.Download(), var_.Download(), mean_.Download(),
                dx_.Download(), dgamma_.Download(), {}};
    for (const Buffer* b : {&dmean_, &dvar_, &dflag_}) {
      const Bytes grad = b->Download();
      out.aux_grads.insert(out.aux_grads.end(), grad.begin(), grad.end());
    }
    return out;
  }

 private:
  void Call(bool backward) {
    const mxnet::ext::MXDType data = MxType(case_.dtype), param = MxType(ParamType(case_.dtype));
    const std::vector<int64_t> channels = {case_.channels()}, one = {1};
    const auto gpu = mxnet::ext::MXContext::GPU(0);
    auto d = [&](const Buffer& b) { return MXTensor(b.get(), case_.shape, data, gpu); };
    auto c = [&](const Buffer& b) { return MXTensor(b.get(), channels, param, gpu); };
    auto f = [&](const Buffer& b) { return MXTensor(b.get(), one, param, gpu); };
    std::vector<MXTensor> in, out;
    if (backward) {
      in = {d(dy_), c(d_inv_rms_), d(x_), c(gamma_), c(mean_), c(var_), f(flag_), d(y_),
            c(inv_rms_)};
      out = {d(dx_), c(dgamma_), c(dmean_), c(dvar_), f(dflag_)};
    } else {
      in = {d(x_), c(gamma_), c(mean_), c(var_), f(flag_)};
      out = {d(y_), c(inv_rms_)};
    }
    const mxnet::ext::OpResource res([this](int bytes) { return temp_->Get(bytes); },
                                     dev_.stream);
    auto* messages = mxnet::ext::MXerrorMsgs::get();
    const auto status = backward ? nobias_gpu::Backward(dev_.apis, case_.attrs, &in, &out, res)
                                 : nobias_gpu::Forward(dev_.apis, case_.attrs, &in, &out, res);
    if (status != mxnet::ext::MX_SUCCESS) {
      throw std::runtime_error(messages->size() ? messages->get(messages->size() - 1)
                                                : "the compute failed without a message");
    }
  }

  const Device& dev_;
  const Case& case_;
  TempSpace* temp_;
  Buffer x_, dy_, gamma_, mean_, var_, flag_, y_, dx_, inv_rms_, d_inv_rms_, dgamma_, dmean_,
      dvar_, dflag_;
};

Outputs DevicePass(const Device& dev, const Case& c, const Inputs& in, TempSpace* temp) {
  DeviceLayer layer(dev, c, in, temp);
  layer.Forward();
  layer.Backward();
  return layer.Results();
}

// ---- checking ------------------------------------------------------------------------------

// FNV-1a over bytes: the digest of every device output of a run, compared across runs.
uint64_t Digest(uint64_t h, const Bytes& b) {
  for (unsigned char byte : b) h = (h ^ byte) * 1099511628211ull;
  return h;
}

struct Verdict {
  bool ok = true, repeatable = true;
  uint64_t digest = 14695981039346656037ull;
  double worst = 0;  // the largest |got - want| / (atol + rtol |want|): at most 1 to pass
  std::string where, error;
};

// Compares output `key`: |got - want| <= rtol * |want| + atol, atol given per value (`atol`
// of want's size) or for all (one value).
void Compare(const char* key, const Bytes& got, DType t, const std::vector<double>& want,
             double rtol, const std::vector<double>& atol, Verdict* v) {
  for (size_t i = 0; i < want.size(); ++i) {
    const double g = Get(got, t, i);
    const double tol = atol[atol.size() == 1 ? 0 : i] + rtol * std::fabs(want[i]);
    const double ratio = std::isfinite(g) ? std::fabs(g - want[i]) / tol : INFINITY;
    if (!(ratio <= v->worst)) {
      v->worst = ratio;
      std::ostringstream where;
      where << key << "[" << i << "] " << g << " want " << want[i];
      v->where = where.str();
    }
  }
  if (!(v->worst <= 1)) v->ok = false;
}

double MaxAbs(const std::vector<double>& v) {
  double m = 0;
  for (double x : v) m = std::max(m, std::fabs(x));
  return m;
}

// Runs the case on the device twice, then (with `reference`) against the CPU's arithmetic.
Verdict CheckCase(const Device& dev, const Case& c, TempSpace* temp, bool reference) {
  Verdict v;
  try {
    const Inputs in = Draw(c, 7);
    const Outputs got = DevicePass(dev, c, in, temp), again = DevicePass(dev, c, in, temp);
    v.repeatable = got.y == again.y && got.inv_rms == again.inv_rms && got.var == again.var &&
                   got.dx == again.dx && got.dgamma == again.dgamma;
    for (const Bytes* b : {&got.y, &got.inv_rms, &got.var, &got.dx, &got.dgamma}) {
      v.digest = Digest(v.digest, *b);
    }
    if (!reference) {
      v.ok = v.repeatable;
      return v;
    }
    std::vector<double> want[5];
    if (c.dtype == DType::kF32) CpuPass<float>(c, in, want);
    else CpuPass<double>(c, in, want);
    const DType p = ParamType(c.dtype);
    // float32 2e-5 and float64 1e-12 of the values' scale; float16 data within a few of its
    // ulps (2^-11 relative) of the float64 reference, its float32 statistics within 1e-5
    const bool half = c.dtype == DType::kF16;
    const double rtol = half ? 2e-3 : c.dtype == DType::kF32 ? 2e-5 : 1e-12;
    const double stats_rtol = half ? 1e-5 : rtol;
    std::vector<double> gamma(c.channels()), dy(c.values()), dot_terms(c.channels());
    for (size_t i = 0; i < gamma.size(); ++i) gamma[i] = Get(in.gamma, p, i);
    for (size_t i = 0; i < dy.size(); ++i) dy[i] = Get(in.dy, c.dtype, i);
    const size_t inner = c.values() / c.shape[0] / c.channels();
    for (size_t i = 0; i < dy.size(); ++i) {
      dot_terms[i / inner % c.channels()] += std::fabs(dy[i] * Get(in.x, c.dtype, i));
    }
    // dx = a * dy - b * x and dgamma = r * sum(dy * x) cancel: compared at their terms' scale
    const double terms = MaxAbs(want[1]) * MaxAbs(gamma) * MaxAbs(dy);
    std::vector<double> dgamma_scale(c.channels());
    for (size_t i = 0; i < dgamma_scale.size(); ++i) {
      dgamma_scale[i] = stats_rtol * want[1][i] * dot_terms[i];
    }
    Compare("y", got.y, c.dtype, want[0], rtol, {rtol * MaxAbs(want[0])}, &v);
    Compare("inv_rms", got.inv_rms, p, want[1], stats_rtol,
            {half ? 0 : rtol * MaxAbs(want[1])}, &v);
    Compare("running_var", got.var, p, want[2], stats_rtol,
            {half ? 0 : rtol * MaxAbs(want[2])}, &v);
    Compare("dx", got.dx, c.dtype, want[3], rtol, {rtol * terms}, &v);
    if (!c.params().fix_gamma) Compare("dgamma", got.dgamma, p, want[4], 0, dgamma_scale, &v);
    const bool frozen = c.params().use_global_stats || !c.train;
    if (got.mean != in.mean) v.error = "running_mean was written";
    if (frozen && got.var != in.var) v.error = "running_var was written with frozen statistics";
    if (std::any_of(got.aux_grads.begin(), got.aux_grads.end(), [](unsigned char b) {
          return b != 0; })) {
      v.error = "the statistics' and the flag's gradients are not zero";
    }
  } catch (const std::exception& err) {
    v.error = err.what();
  }
  v.ok = v.ok && v.repeatable && v.error.empty();
  return v;
}

// ---- cases ----------------------------------------------------------------------------------

nobias_gpu::Attrs Settings(int i) {
  switch (i) {
    case 0: return {{"eps", "1e-5"}};
    case 1: return {{"eps", "1e-5"}, {"relu", "1"}};
    case 2: return {{"eps", "1e-5"}, {"fix_gamma", "1"}, {"momentum", "0.7"}};
    default: return {{"eps", "1e-5"}, {"use_global_stats", "1"}, {"relu", "1"}};
  }
}
const char* const kSettingNames[] = {"plain", "relu", "fix_gamma momentum 0.7",
                                     "use_global_stats relu"};

std::string ShapeText(const std::vector<int64_t>& shape) {
  std::string s;
  for (int64_t d : shape) s += (s.empty() ? "" : "x") + std::to_string(d);
  return s;
}

// tests/test_gpu_compute.py's cases: odd sizes, each setting, training and inference, all dtypes.
std::vector<Case> OddCases(bool quick) {
  const std::vector<std::vector<int64_t>> shapes =
      quick ? std::vector<std::vector<int64_t>>{{2, 3, 17, 19}, {1, 4, 2049}}
            : std::vector<std::vector<int64_t>>{{1, 1, 1}, {2, 3, 9}, {2, 3, 17, 19},
                                                {3, 2, 5000}, {1, 4, 2049}};
  std::vector<Case> cases;
  for (DType t : {DType::kF32, DType::kF64, DType::kF16}) {
    for (const auto& shape : shapes) {
      for (int s = 0; s < 4; ++s) {
        for (bool train : {true, false}) {
          if (quick && (s == 2 || !train)) continue;
          cases.push_back({std::string(kSettingNames[s]) + (train ? ", training" : ", inference"),
                           shape, t, train, Settings(s)});
        }
      }
    }
  }
  return cases;
}

struct SsdLayer {
  std::string name;
  std::vector<int64_t> shape;
};

std::vector<SsdLayer> ReadShapes(const std::string& path) {
  std::ifstream file(path);
  if (!file) throw std::runtime_error("cannot read " + path);
  std::vector<SsdLayer> layers;
  std::string line;
  while (std::getline(file, line)) {
    if (line.empty() || line[0] == '#') continue;
    std::istringstream fields(line);
    SsdLayer layer;
    layer.shape.resize(4);
    for (int64_t& d : layer.shape) fields >> d;
    fields >> layer.name;
    if (!fields) throw std::runtime_error(path + ": expected 'N C H W name', got: " + line);
    layers.push_back(layer);
  }
  return layers;
}

// ---- timing -------------------------------------------------------------------------------

// GPU time of work enqueued on the device's stream, by a pair of events made once.
class EventTimer {
 public:
  explicit EventTimer(const Device& dev) : dev_(dev) {
    Check(dev_, dev_.api.cuEventCreate(&start_, 0), "cuEventCreate");
    Check(dev_, dev_.api.cuEventCreate(&end_, 0), "cuEventCreate");
  }
  ~EventTimer() {
    dev_.api.cuEventDestroy(start_);
    dev_.api.cuEventDestroy(end_);
  }
  EventTimer(const EventTimer&) = delete;
  EventTimer& operator=(const EventTimer&) = delete;

  template <typename Work>
  double Milliseconds(Work work) {
    Check(dev_, dev_.api.cuEventRecord(start_, dev_.stream), "cuEventRecord");
    work();
    Check(dev_, dev_.api.cuEventRecord(end_, dev_.stream), "cuEventRecord");
    Check(dev_, dev_.api.cuEventSynchronize(end_), "cuEventSynchronize");
    float ms = 0;
    Check(dev_, dev_.api.cuEventElapsedTime(&ms, start_, end_), "cuEventElapsedTime");
    return ms;
  }

 private:
  const Device& dev_;
  CUevent start_ = nullptr, end_ = nullptr;
};

struct Timing {
  double forward_ms, forward_backward_ms;
};

// Median over rounds of the mean time of `iters` training passes (forward, or forward then
// backward), with the fused ReLU, as the SSD model trains.
Timing TimeLayer(const Device& dev, const Case& c, TempSpace* temp, EventTimer* timer) {
  const Inputs in = Draw(c, 11);
  DeviceLayer layer(dev, c, in, temp);
  const int iters = 10, rounds = 7;
  auto measure = [&](bool backward) {
    std::vector<double> ms;
    for (int r = 0; r < rounds + 1; ++r) {  // the first round warms up
      const double elapsed = timer->Milliseconds([&] {
        for (int i = 0; i < iters; ++i) {
          layer.Forward();
          if (backward) layer.Backward();
        }
      });
      if (r > 0) ms.push_back(elapsed / iters);
    }
    std::sort(ms.begin(), ms.end());
    return ms[ms.size() / 2];
  };
  return {measure(false), measure(true)};
}

// Device-to-device copy of `bytes`: read plus write bytes over time, best of a few.
double CopyBandwidth(const Device& dev, size_t bytes, EventTimer* timer) {
  Buffer a(dev, bytes), b(dev, bytes);
  double best = 0;
  for (int r = 0; r < 6; ++r) {
    const double ms = timer->Milliseconds([&] {
      Check(dev, dev.api.cuMemcpyDtoDAsync(b.ptr(), a.ptr(), bytes, dev.stream),
            "cuMemcpyDtoD");
    });
    if (r > 0 && ms > 0) best = std::max(best, 2.0 * bytes / (ms * 1e-3));
  }
  return best;
}

// Bytes the kernels read and write in a training forward and backward with the fused ReLU, in
// arrays of the data's size: forward sums x (1), then reads x and writes y (2); backward sums
// dy * x where y > 0 (3), then reads dy, x, y and writes dx (4).
double PassBytes(const Case& c) {
  return static_cast<double>(c.values()) * Size(c.dtype) * (1 + 2 + 3 + 4);
}

// ---- output --------------------------------------------------------------------------------

std::string Quote(const std::string& s) {
  std::string out = "\"";
  for (char ch : s) {
    if (ch == '"' || ch == '\\') out += '\\';
    if (ch == '\n') { out += "\\n"; continue; }
    out += ch;
  }
  return out + "\"";
}

std::string Number(double v) {
  if (!std::isfinite(v)) return "null";
  std::ostringstream s;
  s.precision(6);
  s << v;
  return s.str();
}

struct Options {
  bool quick = false, time = false, reference = true;
  std::string shapes, json;
  int64_t max_values = -1, batch = 0;
};

Options Parse(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) throw std::runtime_error(a + " needs a value");
      return argv[++i];
    };
    if (a == "--quick") o.quick = true;
    else if (a == "--time") o.time = true;
    else if (a == "--no-reference") o.reference = false;
    else if (a == "--shapes") o.shapes = value();
    else if (a == "--json") o.json = value();
    else if (a == "--max-values") o.max_values = std::stoll(value());
    else if (a == "--batch") o.batch = std::stoll(value());
    else throw std::runtime_error("unknown argument " + a);
  }
  return o;
}

bool HalfConversionsRoundTrip() {
  for (uint32_t h = 0; h < 0x10000; ++h) {
    const float f = HalfToFloat(static_cast<uint16_t>(h));
    if (!std::isnan(f) && FloatToHalf(f) != h) {
      std::fprintf(stderr, "float16 conversion does not round-trip 0x%04x\n", h);
      return false;
    }
  }
  return true;
}

// What a run checks: the odd cases, and the SSD layers (each in float32 and float16, as the
// model trains: ReLU fused) that --max-values keeps.
struct Plan {
  std::vector<Case> cases;
  std::vector<SsdLayer> layers;
  std::vector<std::string> skipped;
};

Plan MakePlan(const Options& o) {
  Plan plan{OddCases(o.quick), {}, {}};
  if (o.shapes.empty()) return plan;
  for (SsdLayer layer : ReadShapes(o.shapes)) {
    if (o.batch > 0) layer.shape[0] = o.batch;
    int64_t n = 1;
    for (int64_t d : layer.shape) n *= d;
    if (o.max_values >= 0 && n > o.max_values) {
      plan.skipped.push_back(layer.name);
      continue;
    }
    plan.layers.push_back(layer);
    for (DType t : {DType::kF32, DType::kF16}) {
      plan.cases.push_back({"SSD " + layer.name + ", relu, training", layer.shape, t, true,
                            Settings(1)});
    }
  }
  return plan;
}

struct Totals {
  int failed = 0, not_repeatable = 0;
  double worst = 0;
  uint64_t digest = 14695981039346656037ull;
};

// Every case checked, printed if it failed, and written to `json` as a list.
Totals CheckAll(const Device& dev, const std::vector<Case>& cases, bool reference,
                TempSpace* temp, std::ostream& json) {
  Totals t;
  json << "[";
  for (size_t i = 0; i < cases.size(); ++i) {
    const Case& c = cases[i];
    const Verdict v = CheckCase(dev, c, temp, reference);
    t.failed += !v.ok;
    t.not_repeatable += !v.repeatable;
    t.worst = std::max(t.worst, v.worst);
    t.digest = (t.digest ^ v.digest) * 1099511628211ull;
    if (!v.ok) {
      const std::string why = !v.error.empty() ? v.error
                              : !v.repeatable  ? "the bits differ between two runs"
                                               : "worst " + v.where;
      std::printf("FAIL %s %s %s: %s\n", Name(c.dtype), ShapeText(c.shape).c_str(),
                  c.name.c_str(), why.c_str());
    }
    json << (i ? ",\n  " : "\n  ") << "{\"case\": " << Quote(c.name) << ", \"dtype\": "
         << Quote(Name(c.dtype)) << ", \"shape\": " << Quote(ShapeText(c.shape))
         << ", \"ok\": " << (v.ok ? "true" : "false") << ", \"repeatable\": "
         << (v.repeatable ? "true" : "false") << ", \"worst_error_over_tolerance\": "
         << Number(v.worst) << ", \"error\": " << Quote(v.error) << "}";
  }
  json << "]";
  std::printf("correctness: %zu cases, %d failed, %d not bit-repeatable; worst error %.3g of "
              "its tolerance\n", cases.size(), t.failed, t.not_repeatable, t.worst);
  return t;
}

// The layers timed in float32 and float16, printed and written to `json` as a list; returns
// the device-to-device copy's bandwidth.
double TimeAll(const Device& dev, const std::vector<SsdLayer>& layers, TempSpace* temp,
               std::ostream& json) {
  EventTimer timer(dev);
  const double copy = CopyBandwidth(dev, size_t(1) << 30, &timer);
  std::printf("device-to-device copy: %.0f GB/s; peak from clock x bus width: %.0f GB/s\n",
              copy / 1e9, dev.peak_bytes_per_s / 1e9);
  std::printf("%-32s %-8s %9s %9s %7s %7s\n", "layer", "dtype", "fwd ms", "fwd+bwd", "GB/s",
              "of peak");
  json << "[";
  bool first = true;
  for (const SsdLayer& layer : layers) {
    for (DType t : {DType::kF32, DType::kF16}) {
      const Case c{layer.name, layer.shape, t, true, Settings(1)};
      const Timing tm = TimeLayer(dev, c, temp, &timer);
      const double rate = PassBytes(c) / (tm.forward_backward_ms * 1e-3);
      std::printf("%-32s %-8s %9.4f %9.4f %7.0f %6.0f%%\n", layer.name.c_str(), Name(t),
                  tm.forward_ms, tm.forward_backward_ms, rate / 1e9,
                  dev.peak_bytes_per_s > 0 ? 100 * rate / dev.peak_bytes_per_s : 0.0);
      json << (first ? "\n  " : ",\n  ") << "{\"layer\": " << Quote(layer.name)
           << ", \"shape\": " << Quote(ShapeText(layer.shape)) << ", \"dtype\": "
           << Quote(Name(t)) << ", \"forward_ms\": " << Number(tm.forward_ms)
           << ", \"forward_backward_ms\": " << Number(tm.forward_backward_ms)
           << ", \"bytes\": " << Number(PassBytes(c)) << ", \"data_bytes\": "
           << Number(static_cast<double>(c.values()) * Size(t)) << "}";
      first = false;
    }
  }
  json << "]";
  return copy;
}

int Run(const Options& o) {
  if (!HalfConversionsRoundTrip()) return 2;
  Device dev;
  std::string why;
  if (!OpenDevice(&dev, &why)) {
    std::fprintf(stderr, "no device: %s\n", why.c_str());
    return 2;
  }
  std::printf("device: %s (compute capability %d.%d), driver %s, kernels for %s\n",
              dev.name.c_str(), dev.capability / 10, dev.capability % 10, dev.driver.c_str(),
              nobias_gpu::KernelCompileError(dev.apis).empty() ? "its own architecture"
                                                               : "nothing (NVRTC failed)");
  const Plan plan = MakePlan(o);
  TempSpace temp(dev);
  std::ostringstream json;
  json << "{\"device\": {\"name\": " << Quote(dev.name) << ", \"driver\": "
       << Quote(dev.driver) << ", \"compute_capability\": " << dev.capability
       << ", \"timed\": " << (dev.timed ? "true" : "false")
       << ", \"peak_bytes_per_s\": " << Number(dev.peak_bytes_per_s)
       << ", \"l2_bytes\": " << Number(dev.l2_bytes) << "},\n \"cases\": ";
  const Totals totals = CheckAll(dev, plan.cases, o.reference, &temp, json);
  json << ",\n \"skipped_layers\": [";
  for (size_t i = 0; i < plan.skipped.size(); ++i) {
    json << (i ? ", " : "") << Quote(plan.skipped[i]);
  }
  json << "],\n \"timing\": ";
  double copy = NAN;
  if (o.time && dev.timed) {
    copy = TimeAll(dev, plan.layers, &temp, json);
  } else {
    json << "[]";
  }
  char digest[17];
  std::snprintf(digest, sizeof digest, "%016llx",
                static_cast<unsigned long long>(totals.digest));
  json << ",\n \"copy_bytes_per_s\": " << Number(copy) << ",\n \"failed\": "
       << totals.failed << ", \"not_repeatable\": " << totals.not_repeatable
       << ", \"worst_error_over_tolerance\": " << Number(totals.worst) << ", \"digest\": "
       << Quote(digest) << "}\n";
  if (!o.json.empty()) {
    std::ofstream out(o.json);
    out << json.str();
    if (!out) throw std::runtime_error("cannot write " + o.json);
  }
  return totals.failed == 0 ? 0 : 1;
}

}  // namespace
}  // namespace gpu_check

int main(int argc, char** argv) {
  try {
    return gpu_check::Run(gpu_check::Parse(argc, argv));
  } catch (const std::exception& err) {
    std::fprintf(stderr, "gpu_check: %s\n", err.what());
    return 2;
  }
}
