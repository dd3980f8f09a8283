// The part of MXNet's extension interface (mxnet/lib_api.h) that ssd_nobias/csrc/gpu_compute.cc
// uses, declared for the GPU check, which builds that file unchanged where MXNet is not
// installed. The names and meanings are lib_api's; the layouts need not be, since nothing built
// against this header meets libmxnet.so.

#ifndef SSD_NOBIAS_GPU_CHECK_LIB_API_H_
#define SSD_NOBIAS_GPU_CHECK_LIB_API_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

namespace mxnet {
namespace ext {

enum MXReturnValue { MX_FAIL = 0, MX_SUCCESS = 1 };
enum MXDType { kFloat32 = 0, kFloat64 = 1, kFloat16 = 2, kInt32 = 4 };

struct MXContext {
  std::string dev_type;
  int dev_id;
  static MXContext GPU(int dev_id) { return {"gpu", dev_id}; }
};

struct MXTensor {
  MXTensor(void* data, std::vector<int64_t> dims, MXDType type, MXContext context)
      : data_ptr(data), shape(std::move(dims)), dtype(type), ctx(std::move(context)) {}
  int64_t size() const {
    int64_t n = 1;
    for (int64_t d : shape) n *= d;
    return n;
  }
  void* data_ptr;
  std::vector<int64_t> shape;
  MXDType dtype;
  MXContext ctx;
};

// The operator's resources: temporary device memory and the stream to launch on.
class OpResource {
 public:
  OpResource(std::function<void*(int)> alloc, void* stream)
      : alloc_(std::move(alloc)), stream_(stream) {}
  void* alloc_gpu(int size) const { return alloc_(size); }
  void* get_cuda_stream() const { return stream_; }

 private:
  std::function<void*(int)> alloc_;
  void* stream_;
};

// The messages of failed calls, as MX_ERROR_MSG << ... writes them.
class MXerrorMsgs {
 public:
  static MXerrorMsgs* get() {
    static MXerrorMsgs messages;
    return &messages;
  }
  std::stringstream& add(const char* file, int line) {
    messages_.emplace_back(new std::stringstream);
    *messages_.back() << file << ":" << line << ": ";
    return *messages_.back();
  }
  int size() const { return static_cast<int>(messages_.size()); }
  std::string get(int i) const { return messages_.at(i)->str(); }

 private:
  std::vector<std::unique_ptr<std::stringstream>> messages_;
};

}  // namespace ext
}  // namespace mxnet

#define MX_ERROR_MSG mxnet::ext::MXerrorMsgs::get()->add(__FILE__, __LINE__)

#endif  // SSD_NOBIAS_GPU_CHECK_LIB_API_H_
