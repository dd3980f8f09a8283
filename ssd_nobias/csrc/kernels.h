// The arithmetic of uncentered batch normalization, for plain NCHW and MKLDNN's blocked layouts.
//
// An activation of shape (N, C, inner...) is seen as N x G runs of R = inner * L values; value k
// of run (n, g) belongs to channel g * L + k % L. Plain NCHW is L = 1 (G = C); MKLDNN's nChw8c
// and nChw16c are L = 8 and L = 16 (G = C / L). Per-channel sums run in T over blocks of kBlock
// values per lane and in double across blocks. No MXNet header is needed here.

#ifndef SSD_NOBIAS_KERNELS_H_
#define SSD_NOBIAS_KERNELS_H_

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

namespace nobias {

struct Params {
  double eps = 1e-5;
  double momentum = 0.9;
  bool use_global_stats = false;
  bool fix_gamma = false;
  bool relu = false;
};

// The operator's attributes from its string map (lib_api's, or MXNet's NodeAttrs::dict).
template <typename Attrs>
Params ParseParams(const Attrs& attrs) {
  auto get = [&attrs](const char* key, double fallback) {
    auto it = attrs.find(key);
    return it == attrs.end() ? fallback : std::stod(it->second);
  };
  Params p;
  p.eps = get("eps", p.eps);
  p.momentum = get("momentum", p.momentum);
  p.use_global_stats = get("use_global_stats", 0) != 0;
  p.fix_gamma = get("fix_gamma", 0) != 0;
  p.relu = get("relu", 0) != 0;
  return p;
}

struct Geometry {
  int64_t n, c, inner;
  int64_t size() const { return n * c * inner; }
  double count() const { return static_cast<double>(n * inner); }
};

// A shape (N, C, inner...) seen as N x C x inner.
template <typename Shape>
Geometry GeometryOf(const Shape& shape, int ndim) {
  Geometry g{shape[0], shape[1], 1};
  for (int i = 2; i < ndim; ++i) g.inner *= shape[i];
  return g;
}

constexpr int64_t kBlock = 256;

// part[n * C + g * L + l] = sum over run (n, g), lane l, of a' * b, a' = a where gate > 0 (kGated)
template <typename T, int L, bool kGated>
void RunDots(const T* a, const T* b, const T* gate, const Geometry& geo, double* part) {
  const int64_t groups = geo.c / L;
#pragma omp parallel for collapse(2) schedule(static)
  for (int64_t n = 0; n < geo.n; ++n) {
    for (int64_t grp = 0; grp < groups; ++grp) {
      const int64_t base = (n * groups + grp) * geo.inner * L;
      double total[L] = {};
      for (int64_t i0 = 0; i0 < geo.inner; i0 += kBlock) {
        const int64_t i1 = std::min(i0 + kBlock, geo.inner);
        if (L == 1) {
          T acc = 0;
#pragma omp simd reduction(+ : acc)
          for (int64_t i = base + i0; i < base + i1; ++i) {
            acc += (kGated ? (gate[i] > T(0) ? a[i] : T(0)) : a[i]) * b[i];
          }
          total[0] += acc;
        } else {
          T acc[L] = {};
          for (int64_t i = i0; i < i1; ++i) {
            const int64_t o = base + i * L;
#pragma omp simd
            for (int l = 0; l < L; ++l) {
              acc[l] += (kGated ? (gate[o + l] > T(0) ? a[o + l] : T(0)) : a[o + l]) * b[o + l];
            }
          }
          for (int l = 0; l < L; ++l) total[l] += acc[l];
        }
      }
      for (int l = 0; l < L; ++l) part[n * geo.c + grp * L + l] = total[l];
    }
  }
}

// Per-channel sums of a' * b over the batch.
template <typename T, int L, bool kGated>
std::vector<double> ChannelDots(const T* a, const T* b, const T* gate, const Geometry& geo) {
  std::vector<double> part(geo.n * geo.c);
  RunDots<T, L, kGated>(a, b, gate, geo, part.data());
  std::vector<double> total(geo.c, 0.0);
  for (int64_t n = 0; n < geo.n; ++n) {
    for (int64_t c = 0; c < geo.c; ++c) total[c] += part[n * geo.c + c];
  }
  return total;
}

// y = scale * x, then max(y, 0) with relu; scale per channel
template <typename T, int L>
void Scale(const T* x, const std::vector<T>& scale, bool relu, const Geometry& geo, T* y) {
  const int64_t groups = geo.c / L;
#pragma omp parallel for collapse(2) schedule(static)
  for (int64_t n = 0; n < geo.n; ++n) {
    for (int64_t grp = 0; grp < groups; ++grp) {
      const int64_t base = (n * groups + grp) * geo.inner * L;
      T s[L];
      for (int l = 0; l < L; ++l) s[l] = scale[grp * L + l];
      for (int64_t i = 0; i < geo.inner; ++i) {
        const int64_t o = base + i * L;
        if (relu) {
#pragma omp simd
          for (int l = 0; l < L; ++l) y[o + l] = std::max(s[l] * x[o + l], T(0));
        } else {
#pragma omp simd
          for (int l = 0; l < L; ++l) y[o + l] = s[l] * x[o + l];
        }
      }
    }
  }
}

// dx = a * dy' - b * x, dy' = dy where gate > 0 (kGated), a and b per channel
template <typename T, int L, bool kGated>
void InputGrad(const T* dy, const T* x, const T* gate, const std::vector<T>& a,
               const std::vector<T>& b, const Geometry& geo, T* dx) {
  const int64_t groups = geo.c / L;
#pragma omp parallel for collapse(2) schedule(static)
  for (int64_t n = 0; n < geo.n; ++n) {
    for (int64_t grp = 0; grp < groups; ++grp) {
      const int64_t base = (n * groups + grp) * geo.inner * L;
      T sa[L], sb[L];
      for (int l = 0; l < L; ++l) {
        sa[l] = a[grp * L + l];
        sb[l] = b[grp * L + l];
      }
      for (int64_t i = 0; i < geo.inner; ++i) {
        const int64_t o = base + i * L;
#pragma omp simd
        for (int l = 0; l < L; ++l) {
          const T g = kGated ? (gate[o + l] > T(0) ? dy[o + l] : T(0)) : dy[o + l];
          dx[o + l] = sa[l] * g - sb[l] * x[o + l];
        }
      }
    }
  }
}

// Forward pass. Training uses the batch's m2 and updates moving_var; otherwise moving_var is m2.
// Writes y and, per channel, the 1/sqrt(m2 + eps) applied.
template <typename T, int L>
void Forward(const Params& p, bool train, const T* x, const T* gamma, T* moving_var,
             const Geometry& geo, T* y, T* inv_rms) {
  std::vector<double> m2(geo.c);
  if (train) {
    m2 = ChannelDots<T, L, false>(x, x, nullptr, geo);
    for (int64_t c = 0; c < geo.c; ++c) {
      m2[c] /= geo.count();
      moving_var[c] = static_cast<T>(p.momentum * moving_var[c] + (1.0 - p.momentum) * m2[c]);
    }
  } else {
    for (int64_t c = 0; c < geo.c; ++c) m2[c] = moving_var[c];
  }
  std::vector<T> scale(geo.c);
  for (int64_t c = 0; c < geo.c; ++c) {
    const double r = 1.0 / std::sqrt(m2[c] + p.eps);
    inv_rms[c] = static_cast<T>(r);
    scale[c] = static_cast<T>(p.fix_gamma ? r : gamma[c] * r);
  }
  Scale<T, L>(x, scale, p.relu, geo, y);
}

// Backward pass of y = g * x * r(m2), m2 = mean(x^2):
//   dx = g*r*dy - g*r^3*sum(dy*x)/count * x,   dgamma = r * sum(dy*x).
// With frozen statistics (not train) r is a constant and only g*r*dy remains. With the fused
// ReLU, dy reaches the normalization only where the output y was positive.
template <typename T, int L>
void Backward(const Params& p, bool train, const T* dy, const T* x, const T* y, const T* gamma,
              const T* inv_rms, const Geometry& geo, T* dx, std::vector<double>* dgamma) {
  const T* gate = p.relu ? y : nullptr;
  const std::vector<double> dot = gate ? ChannelDots<T, L, true>(dy, x, gate, geo)
                                       : ChannelDots<T, L, false>(dy, x, nullptr, geo);
  std::vector<T> a(geo.c), b(geo.c);
  dgamma->assign(geo.c, 0.0);
  for (int64_t c = 0; c < geo.c; ++c) {
    const double r = inv_rms[c];
    const double g = p.fix_gamma ? 1.0 : static_cast<double>(gamma[c]);
    if (!p.fix_gamma) (*dgamma)[c] = dot[c] * r;
    a[c] = static_cast<T>(g * r);
    b[c] = train ? static_cast<T>(g * r * r * r * dot[c] / geo.count()) : T(0);
  }
  if (gate) {
    InputGrad<T, L, true>(dy, x, gate, a, b, geo, dx);
  } else {
    InputGrad<T, L, false>(dy, x, nullptr, a, b, geo, dx);
  }
}

}  // namespace nobias

#endif  // SSD_NOBIAS_KERNELS_H_
