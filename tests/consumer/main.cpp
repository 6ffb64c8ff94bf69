// Uses the installed headers from two translation units (main.cpp, other.cpp): an ODR break in a
// header (a non-inline function or global) fails this link.
#include <graft/graft.hpp>

#include <cstdio>

double loss_from_other_tu(const graft::Tensor& w);

int main() {
  using namespace graft;
  manual_seed(0);
  Tensor w = randn({3, 2}).set_requires_grad();
  Tensor loss = sum(exp(w) * w) + loss_from_other_tu(w);
  loss.backward();
  std::printf("consumer ok: loss %.4f, grad shape %s\n", loss.item(), w.grad().shape().str().c_str());
  return w.grad().defined() ? 0 : 1;
}
