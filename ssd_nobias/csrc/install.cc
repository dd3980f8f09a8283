// Puts mkldnn_layouts.cc's compute in place of the lib_api one for nobias_batch_norm and its
// backward on the CPU, and marks both as MKLDNN-aware so that MXNet hands them blocked arrays as
// they are. Called once, from Python, after mx.library.load has registered the operator.
//
// This file is compiled at -O0, with the two Op::set_attr instantiations declared extern, so the
// calls reach libmxnet's own copies. nnvm's header-only set_attr hands libmxnet a std::function
// whose argument is a pointer, and GCC 4.8's libstdc++ (libmxnet's) passes such arguments to
// std::function's invoker by value where newer ones pass them by reference: an inlined copy of
// set_attr compiled here would crash inside libmxnet. The attribute values set here take their
// arguments by reference only, which both conventions pass alike.

#include <cstdint>
#include <exception>
#include <string>

#include "mkldnn_layouts.h"

extern template nnvm::Op& nnvm::Op::set_attr<mxnet::FComputeEx>(const std::string&,
                                                                 const mxnet::FComputeEx&, int);
extern template nnvm::Op& nnvm::Op::set_attr<bool>(const std::string&, const bool&, int);

namespace {

// Above lib_api's level for the operators it registers.
constexpr int kLevel = 100;

void Install(const char* op_name, const mxnet::FComputeEx& compute) {
  nnvm::Op* op = const_cast<nnvm::Op*>(nnvm::Op::Get(op_name));
  op->set_attr<mxnet::FComputeEx>("FComputeEx<cpu>", compute, kLevel);
  op->set_attr<bool>("TIsMKLDNN", true, kLevel);
}

}  // namespace

// 0 on success, 1 if the operator is not registered yet or MXNet refused the attributes.
extern "C" int nobias_bn_use_mkldnn_layouts() {
  try {
    Install("nobias_batch_norm", nobias::ForwardEx);
    Install("_backward_nobias_batch_norm", nobias::BackwardEx);
  } catch (const std::exception&) {
    return 1;
  }
  return 0;
}

// Large inputs read so far by the MKLDNN compute in each layout (see LayoutReads).
extern "C" void nobias_bn_layout_reads(int64_t counts[4]) { nobias::LayoutReads(counts); }
