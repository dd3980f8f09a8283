// kernels.h in blocked layouts (8 and 16 lanes) against plain NCHW, forward and backward, in
// training and inference, with and without the fused ReLU. Prints the largest relative
// difference over every output; tests/test_native.py compiles and runs it.

#include <cmath>
#include <cstdio>
#include <random>
#include <vector>

#include "kernels.h"

using nobias::Geometry;

// plain NCHW -> `lanes` layout (see kernels.h)
std::vector<float> Block(const std::vector<float>& plain, const Geometry& g, int lanes) {
  std::vector<float> out(plain.size());
  for (int64_t n = 0; n < g.n; ++n)
    for (int64_t c = 0; c < g.c; ++c)
      for (int64_t i = 0; i < g.inner; ++i)
        out[((n * (g.c / lanes) + c / lanes) * g.inner + i) * lanes + c % lanes] =
            plain[(n * g.c + c) * g.inner + i];
  return out;
}

double MaxRelDiff(const std::vector<float>& a, const std::vector<float>& b) {
  double diff = 0, scale = 1e-30;
  for (size_t i = 0; i < a.size(); ++i) {
    diff = std::max(diff, std::fabs(double(a[i]) - b[i]));
    scale = std::max(scale, std::fabs(double(b[i])));
  }
  return diff / scale;
}

template <int L>
double Compare(const nobias::Params& p, bool train, const Geometry& g) {
  std::mt19937 rng(7);
  std::normal_distribution<float> normal(0.3f, 1.0f);
  std::vector<float> x(g.size()), dy(g.size()), gamma(g.c), var1(g.c, 1.5f), var2(g.c, 1.5f);
  for (auto& v : x) v = normal(rng);
  for (auto& v : dy) v = normal(rng);
  for (auto& v : gamma) v = normal(rng);
  std::vector<float> y1(g.size()), y2(g.size()), r1(g.c), r2(g.c), dx1(g.size()), dx2(g.size());
  std::vector<double> dg1, dg2;
  nobias::Forward<float, 1>(p, train, x.data(), gamma.data(), var1.data(), g, y1.data(), r1.data());
  nobias::Backward<float, 1>(p, train, dy.data(), x.data(), y1.data(), gamma.data(), r1.data(), g,
                             dx1.data(), &dg1);
  const std::vector<float> xb = Block(x, g, L), dyb = Block(dy, g, L);
  nobias::Forward<float, L>(p, train, xb.data(), gamma.data(), var2.data(), g, y2.data(),
                            r2.data());
  nobias::Backward<float, L>(p, train, dyb.data(), xb.data(), y2.data(), gamma.data(), r2.data(),
                             g, dx2.data(), &dg2);
  std::vector<float> g1(dg1.begin(), dg1.end()), g2(dg2.begin(), dg2.end());
  return std::max({MaxRelDiff(y2, Block(y1, g, L)), MaxRelDiff(dx2, Block(dx1, g, L)),
                   MaxRelDiff(r2, r1), MaxRelDiff(var2, var1), MaxRelDiff(g2, g1)});
}

int main() {
  const Geometry shapes[] = {{4, 16, 37 * 29}, {2, 32, 1}, {3, 48, 600}};
  double worst = 0;
  for (const Geometry& g : shapes)
    for (bool train : {true, false})
      for (bool relu : {false, true}) {
        nobias::Params p;
        p.relu = relu;
        worst = std::max({worst, Compare<8>(p, train, g), Compare<16>(p, train, g)});
      }
  std::printf("%.3e\n", worst);
  return 0;
}
