// nobias_batch_norm's CPU compute on MXNet's own NDArrays, reading and writing MKLDNN's blocked
// layouts in place. install.cc puts it in place of the lib_api compute (nobias_bn.cc).
//
// Why: MXNet's CPU convolutions keep activations in nChw8c / nChw16c and its BatchNorm works on
// them as they are. A lib_api operator only ever sees plain NCHW: MXNet copies each blocked input
// to NCHW before the call (data forward; data and output gradient backward) and the next
// convolution copies the plain output back, five extra passes over every activation per training
// step. Here an input in nChw8c / nChw16c is read as it is and the output is written in the same
// layout; any other MKLDNN layout is reordered to NCHW first.
//
// ABI. This file is compiled against the headers in the mxnet 1.9.1 wheel, with the old
// std::string ABI the wheel was built with (GCC 4.8), and linked to its libmxnet.so. It uses
// NDArray, whose layout the two compilers agree on, and reads NodeAttrs::dict, which sits before
// the one member (an unordered_map, 48 bytes in GCC 4.8's libstdc++, 56 in newer ones) that
// would move anything after it; it never touches NodeAttrs::parsed or nnvm::Node.

#include "mkldnn_layouts.h"

#include <atomic>
#include <string>
#include <vector>

#include "kernels.h"
#include "operator_io.h"

namespace mxnet {
// Exported by libmxnet.so (src/operator/nn/mkldnn/mkldnn_base.cc): `desc`'s dims and data type
// with the given format tag. oneDNN's own functions are not exported, so descriptors are built
// through this.
mkldnn::memory::desc GetDesc(const mkldnn::memory::desc& desc, const mkldnn_format_tag_t& format);
}  // namespace mxnet

namespace nobias {
namespace {

using mxnet::NDArray;
using mxnet::OpReqType;

using namespace io;  // NOLINT: the operator's input and output positions

mkldnn::memory::desc BlockedDesc(const mxnet::TShape& shape, int lanes) {
  mkldnn::memory::desc plain;
  plain.data.ndims = shape.ndim();
  for (int i = 0; i < shape.ndim(); ++i) plain.data.dims[i] = shape[i];
  plain.data.data_type = dnnl_f32;
  const mkldnn_format_tag_t tag = lanes == 8 ? dnnl_nChw8c : dnnl_nChw16c;
  return mxnet::GetDesc(plain, tag);
}

// Lanes of an array held in nChw8c or nChw16c; 0 for any other MKLDNN layout.
int BlockedLanes(const NDArray& a) {
  if (a.dtype() != mshadow::kFloat32 || a.shape().ndim() != 4 || a.IsView()) return 0;
  for (int lanes : {8, 16}) {
    if (a.shape()[1] % lanes != 0) continue;
    if (a.GetMKLDNNData(BlockedDesc(a.shape(), lanes)) != nullptr) return lanes;
  }
  return 0;
}

// An activation as the kernels read it; `keep` holds a reordered copy alive when one was made.
struct View {
  void* ptr;
  int lanes;
  NDArray keep;
};

// How many large inputs each call read in each layout: [plain, nChw8c, nChw16c, reordered].
std::atomic<int64_t> layout_reads[4];

View Read(const NDArray& a) {
  if (!a.IsMKLDNNData()) {
    ++layout_reads[0];
    return {a.data().dptr_, 1, a};
  }
  const int lanes = BlockedLanes(a);
  if (lanes != 0) {
    ++layout_reads[lanes == 8 ? 1 : 2];
    return {a.storage_handle().dptr, lanes, a};
  }
  ++layout_reads[3];
  NDArray plain = a.Reorder2Default();
  return {plain.data().dptr_, 1, plain};
}

// Copy (or add) src in src_lanes layout into dst in dst_lanes layout.
template <typename T>
void Convert(const T* src, int src_lanes, T* dst, int dst_lanes, const Geometry& g, bool add) {
  const int64_t gs = g.c / src_lanes, gd = g.c / dst_lanes;
#pragma omp parallel for collapse(2) schedule(static)
  for (int64_t n = 0; n < g.n; ++n) {
    for (int64_t c = 0; c < g.c; ++c) {
      const T* s = src + (n * gs + c / src_lanes) * g.inner * src_lanes + c % src_lanes;
      T* d = dst + (n * gd + c / dst_lanes) * g.inner * dst_lanes + c % dst_lanes;
      for (int64_t i = 0; i < g.inner; ++i) {
        const T v = s[i * src_lanes];
        d[i * dst_lanes] = add ? d[i * dst_lanes] + v : v;
      }
    }
  }
}

// The array's values in `lanes` layout: the array itself when it is in it, else a copy.
template <typename T>
const T* InLayout(const View& v, int lanes, const Geometry& g, std::vector<T>* copy) {
  if (v.lanes == lanes) return static_cast<const T*>(v.ptr);
  copy->resize(g.size());
  Convert(static_cast<const T*>(v.ptr), v.lanes, copy->data(), lanes, g, false);
  return copy->data();
}

// Where a large output is computed: in the array itself, in `lanes` layout, when it can hold it;
// else in a buffer that Finish() copies (or adds) into the array.
template <typename T>
class Output {
 public:
  Output(const NDArray& array, OpReqType req, int lanes, const Geometry& g)
      : array_(const_cast<NDArray&>(array)), req_(req), lanes_(lanes), g_(g) {
    if (req == mxnet::kWriteTo || req == mxnet::kWriteInplace) {
      if (lanes > 1 && array_.CreateMKLDNNData(BlockedDesc(array_.shape(), lanes)) != nullptr) {
        ptr_ = static_cast<T*>(array_.storage_handle().dptr);
      } else if (lanes == 1) {
        array_.InvalidateMKLDNNData();
        ptr_ = array_.data().dptr<T>();
      }
    }
    if (ptr_ == nullptr) {
      buffer_.resize(g.size());
      ptr_ = buffer_.data();
    }
  }

  T* ptr() const { return ptr_; }

  void Finish() {
    if (buffer_.empty() || req_ == mxnet::kNullOp) return;
    if (req_ == mxnet::kAddTo) {
      const View current = Read(array_);
      CHECK(current.keep.IsSame(array_))
          << "nobias_batch_norm: cannot accumulate into an array in this MKLDNN layout";
      Convert(buffer_.data(), lanes_, static_cast<T*>(current.ptr), current.lanes, g_, true);
    } else {  // a view, which cannot take a blocked layout and is plain now
      Convert(buffer_.data(), lanes_, array_.data().dptr<T>(), 1, g_, false);
    }
  }

 private:
  NDArray& array_;
  OpReqType req_;
  int lanes_;
  const Geometry& g_;
  std::vector<T> buffer_;
  T* ptr_ = nullptr;
};

template <typename T>
bool TrainingMode(const Params& p, const NDArray& is_train) {
  return !p.use_global_stats && is_train.data().dptr<T>()[0] != T(0);
}

template <typename T>
void Fill(const NDArray& a, OpReqType req, const std::vector<double>& values) {
  if (req == mxnet::kNullOp) return;
  T* p = a.data().dptr<T>();
  for (size_t i = 0; i < values.size(); ++i) {
    p[i] = static_cast<T>(req == mxnet::kAddTo ? p[i] + values[i] : values[i]);
  }
}

template <typename T>
void ForwardTyped(const Params& p, const std::vector<NDArray>& in,
                  const std::vector<OpReqType>& req, const std::vector<NDArray>& out) {
  const mxnet::TShape& shape = in[kData].shape();
  const Geometry geo = GeometryOf(shape, shape.ndim());
  const View x = Read(in[kData]);
  const bool train = TrainingMode<T>(p, in[kIsTrain]);
  const T* xp = static_cast<const T*>(x.ptr);
  const T* gamma = in[kGamma].data().dptr<T>();
  T* moving_var = in[kRunningVar].data().dptr<T>();
  std::vector<T> inv_rms(geo.c);
  Output<T> y(out[0], req[0], x.lanes, geo);
  switch (x.lanes) {
    case 8: Forward<T, 8>(p, train, xp, gamma, moving_var, geo, y.ptr(), inv_rms.data()); break;
    case 16: Forward<T, 16>(p, train, xp, gamma, moving_var, geo, y.ptr(), inv_rms.data()); break;
    default: Forward<T, 1>(p, train, xp, gamma, moving_var, geo, y.ptr(), inv_rms.data()); break;
  }
  y.Finish();
  Fill<T>(out[1], req[1], std::vector<double>(inv_rms.begin(), inv_rms.end()));
}

template <typename T>
void BackwardTyped(const Params& p, const std::vector<NDArray>& in,
                   const std::vector<OpReqType>& req, const std::vector<NDArray>& out) {
  const mxnet::TShape& shape = in[kFwdIn + kData].shape();
  const Geometry geo = GeometryOf(shape, shape.ndim());
  const View x = Read(in[kFwdIn + kData]);
  const int lanes = x.lanes;
  const bool train = TrainingMode<T>(p, in[kFwdIn + kIsTrain]);
  std::vector<T> dy_copy, y_copy;
  const T* dy = InLayout<T>(Read(in[0]), lanes, geo, &dy_copy);
  const T* y = p.relu ? InLayout<T>(Read(in[kFwdOut]), lanes, geo, &y_copy) : nullptr;
  const T* xp = static_cast<const T*>(x.ptr);
  const T* gamma = in[kFwdIn + kGamma].data().dptr<T>();
  const T* inv_rms = in[kFwdOut + 1].data().dptr<T>();
  std::vector<double> dgamma;
  Output<T> dx(out[kData], req[kData], lanes, geo);
  switch (lanes) {
    case 8: Backward<T, 8>(p, train, dy, xp, y, gamma, inv_rms, geo, dx.ptr(), &dgamma); break;
    case 16: Backward<T, 16>(p, train, dy, xp, y, gamma, inv_rms, geo, dx.ptr(), &dgamma); break;
    default: Backward<T, 1>(p, train, dy, xp, y, gamma, inv_rms, geo, dx.ptr(), &dgamma); break;
  }
  dx.Finish();
  Fill<T>(out[kGamma], req[kGamma], dgamma);
  const std::vector<double> zeros(geo.c, 0.0);  // the statistics and the mode are not learned
  Fill<T>(out[kRunningMean], req[kRunningMean], zeros);
  Fill<T>(out[kRunningVar], req[kRunningVar], zeros);
  Fill<T>(out[kIsTrain], req[kIsTrain], std::vector<double>(1, 0.0));
}

void RefuseFloat16(const NDArray& data) {
  if (data.dtype() == mshadow::kFloat16) {
    LOG(FATAL) << "nobias_batch_norm: float16 data runs on GPUs only; the CPU compute takes "
               << "float32 and float64";
  }
}

}  // namespace

void LayoutReads(int64_t counts[4]) {
  for (int i = 0; i < 4; ++i) counts[i] = layout_reads[i].load();
}

void ForwardEx(const nnvm::NodeAttrs& attrs, const mxnet::OpContext& ctx,
               const std::vector<NDArray>& in, const std::vector<OpReqType>& req,
               const std::vector<NDArray>& out) {
  const Params p = ParseParams(attrs.dict);
  RefuseFloat16(in[kData]);
  if (in[kData].dtype() == mshadow::kFloat64) {
    ForwardTyped<double>(p, in, req, out);
  } else {
    ForwardTyped<float>(p, in, req, out);
  }
}

void BackwardEx(const nnvm::NodeAttrs& attrs, const mxnet::OpContext& ctx,
                const std::vector<NDArray>& in, const std::vector<OpReqType>& req,
                const std::vector<NDArray>& out) {
  const Params p = ParseParams(attrs.dict);
  RefuseFloat16(in[kFwdIn + kData]);
  if (in[kFwdIn + kData].dtype() == mshadow::kFloat64) {
    BackwardTyped<double>(p, in, req, out);
  } else {
    BackwardTyped<float>(p, in, req, out);
  }
}

}  // namespace nobias
