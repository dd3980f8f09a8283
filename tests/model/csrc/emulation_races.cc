// The emulated GPU compute (gpu_emulation.cc) under ThreadSanitizer: a forward and a backward
// pass for each data type, with and without the fused ReLU, in training. A block's threads share
// the reduction's __shared__ array, so a missing __syncthreads in gpu_kernels.cuh is a data race
// that ThreadSanitizer reports. Exits 0 when every pass ran.

#include <cstdint>
#include <cstdio>
#include <vector>

extern "C" int emu_compute(int backward, int num_attrs, const char* const* keys,
                           const char* const* values, int ndim, const int64_t* shape, int dtype,
                           void** inputs, void** outputs, char* error, int error_size,
                           char* launches, int launches_size);

namespace {

// dtype: 0 float32, 1 float64, 2 float16 (stored as 16-bit patterns; float32 parameters)
bool Pass(int dtype, const char* relu) {
  const int64_t shape[] = {2, 3, 700};
  const int64_t size = 2 * 3 * 700, channels = 3;
  const size_t data_bytes = dtype == 1 ? 8 : dtype == 2 ? 2 : 4, param_bytes = dtype == 1 ? 8 : 4;
  auto data = [&](int pattern) {
    std::vector<unsigned char> v(size * data_bytes);
    for (size_t i = 0; i < v.size(); ++i) v[i] = static_cast<unsigned char>(i * pattern % 61);
    if (dtype == 2) {  // small, finite float16 values
      for (size_t i = 1; i < v.size(); i += 2) v[i] = 0x30 + (v[i] & 0x7);
    }
    return v;
  };
  auto params = [&](int64_t n, double value) {
    std::vector<unsigned char> v(n * param_bytes);
    for (int64_t i = 0; i < n; ++i) {
      if (param_bytes == 8) reinterpret_cast<double*>(v.data())[i] = value;
      else reinterpret_cast<float*>(v.data())[i] = static_cast<float>(value);
    }
    return v;
  };
  std::vector<unsigned char> x = data(7), dy = data(11), y(x.size()), dx(x.size());
  std::vector<unsigned char> gamma = params(channels, 1), mean = params(channels, 0),
                             var = params(channels, 1), flag = params(1, 1),
                             inv_rms = params(channels, 0), d_inv_rms = params(channels, 0),
                             dgamma = params(channels, 0), dmean = params(channels, 0),
                             dvar = params(channels, 0), dflag = params(1, 0);
  const char* keys[] = {"relu"};
  const char* values[] = {relu};
  char error[512], launches[1024];
  void* fwd_in[] = {x.data(), gamma.data(), mean.data(), var.data(), flag.data()};
  void* fwd_out[] = {y.data(), inv_rms.data()};
  void* bwd_in[] = {dy.data(), d_inv_rms.data(), x.data(), gamma.data(), mean.data(),
                    var.data(), flag.data(), y.data(), inv_rms.data()};
  void* bwd_out[] = {dx.data(), dgamma.data(), dmean.data(), dvar.data(), dflag.data()};
  for (int backward = 0; backward < 2; ++backward) {
    if (!emu_compute(backward, 1, keys, values, 3, shape, dtype, backward ? bwd_in : fwd_in,
                     backward ? bwd_out : fwd_out, error, sizeof error, launches,
                     sizeof launches)) {
      std::printf("dtype %d relu %s backward %d: %s\n", dtype, relu, backward, error);
      return false;
    }
  }
  return true;
}

}  // namespace

int main() {
  bool ok = true;
  for (int dtype : {0, 1, 2}) {
    for (const char* relu : {"0", "1"}) ok = Pass(dtype, relu) && ok;
  }
  return ok ? 0 : 1;
}
