// nobias_batch_norm's forward and backward compute on MXNet NDArrays in any CPU layout.

#ifndef SSD_NOBIAS_MKLDNN_LAYOUTS_H_
#define SSD_NOBIAS_MKLDNN_LAYOUTS_H_

#include <mxnet/ndarray.h>
#include <mxnet/op_attr_types.h>

#include <vector>

namespace nobias {

// Large inputs read so far in each layout: plain, nChw8c, nChw16c, other (reordered to plain).
void LayoutReads(int64_t counts[4]);

void ForwardEx(const nnvm::NodeAttrs& attrs, const mxnet::OpContext& ctx,
               const std::vector<mxnet::NDArray>& in, const std::vector<mxnet::OpReqType>& req,
               const std::vector<mxnet::NDArray>& out);

void BackwardEx(const nnvm::NodeAttrs& attrs, const mxnet::OpContext& ctx,
                const std::vector<mxnet::NDArray>& in, const std::vector<mxnet::OpReqType>& req,
                const std::vector<mxnet::NDArray>& out);

}  // namespace nobias

#endif  // SSD_NOBIAS_MKLDNN_LAYOUTS_H_
