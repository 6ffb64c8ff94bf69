// Core tensor and autograd behaviour, and gradient checks of the ops in elementwise/reduce/view.
#include "harness.hpp"

using namespace graft;
using namespace graft_test;

GRADCHECK_CASE("add", "broadcast and non-contiguous") {
  gradcheck1([](auto& in) { return in[0] + in[1]; }, {rand_noncontig({3, 4}), rand_in({4}, -1, 1, 3)});
}
GRADCHECK_CASE("mul", "broadcast") {
  gradcheck1([](auto& in) { return in[0] * in[1]; }, {rand_in({2, 3, 4}), rand_in({3, 1}, -1, 1, 5)});
}
GRADCHECK_CASE("exp", "non-contiguous") {
  gradcheck1([](auto& in) { return exp(in[0]); }, {rand_noncontig({3, 5})});
}
GRADCHECK_CASE("sum", "dims and keepdim") {
  gradcheck([](auto& in) { return std::vector<Tensor>{sum(in[0], {0, 2}), sum(in[0], {-1}, true), sum(in[0])}; },
            {rand_in({2, 3, 4})});
}

TEST_CASE("backward accumulates into .grad and grad() leaves it untouched", "[autograd]") {
  Tensor w = rand_in({3}).set_requires_grad();
  Tensor y = sum(w * w);
  y.backward({}, true);
  Tensor g1 = w.grad().clone();
  GRAFT_REQUIRE_CLOSE(g1, w.detach() * 2.0, kTolF64);
  auto g = autograd::grad({y}, {w}, {}, true);
  GRAFT_REQUIRE_CLOSE(g[0], g1, kTolF64);
  GRAFT_REQUIRE_CLOSE(w.grad(), g1, kTolF64);  // grad() did not touch .grad
  y.backward();
  GRAFT_REQUIRE_CLOSE(w.grad(), g1 * 2.0, kTolF64);  // accumulated
}

TEST_CASE("backward twice without retain_graph throws naming the node", "[autograd][errors]") {
  Tensor w = rand_in({3}).set_requires_grad();
  Tensor y = sum(w * w);
  y.backward();
  require_error([&] { y.backward(); }, {"MulBackward", "retain_graph"});
}

TEST_CASE("in-place change of a saved tensor is caught", "[autograd][errors]") {
  Tensor w = rand_in({3}).set_requires_grad();
  Tensor x = rand_in({3});
  Tensor y = sum(w * x);
  x.add_(ones({3}, DType::Float64));
  require_error([&] { y.backward(); }, {"MulBackward", "in-place", "version"});
}

TEST_CASE("frozen leaves build no graph", "[autograd]") {
  Tensor w = rand_in({3});  // requires_grad false
  Tensor y = exp(w) * 2.0;
  REQUIRE(!y.requires_grad());
  REQUIRE(y.grad_fn() == nullptr);
  Tensor v = rand_in({3}).set_requires_grad();
  Tensor z = v * exp(w);
  // the exp of the frozen input made no node; z's node has an empty edge for it
  REQUIRE(z.grad_fn()->next_edges.size() == 2);
  REQUIRE(!z.grad_fn()->next_edges[1].valid());
}

TEST_CASE("no-grad scope and detach", "[autograd]") {
  Tensor w = rand_in({3}).set_requires_grad();
  {
    NoGradGuard ng;
    REQUIRE(!(w * 2.0).requires_grad());
  }
  REQUIRE((w * 2.0).requires_grad());
  REQUIRE(!w.detach().requires_grad());
  require_error([&] { sum(w.detach() * 2.0).backward(); }, {"backward", "does not require grad"});
}

TEST_CASE("retain_grad keeps a non-leaf gradient", "[autograd]") {
  Tensor w = rand_in({3}).set_requires_grad();
  Tensor h = w * 3.0;
  h.retain_grad();
  sum(h * h).backward();
  GRAFT_REQUIRE_CLOSE(h.grad(), h.detach() * 2.0, kTolF64);
}

TEST_CASE("grad() of a non-leaf input, and create_graph for second derivatives", "[autograd]") {
  Tensor x = rand_in({4}).set_requires_grad();
  Tensor h = x * x;
  Tensor y = sum(h * x);  // y = sum x^3
  auto gh = autograd::grad({y}, {h}, {}, true);
  GRAFT_REQUIRE_CLOSE(gh[0], x.detach(), kTolF64);
  auto gx = autograd::grad({y}, {x}, {}, true, true);  // 3 x^2, with graph
  REQUIRE(gx[0].requires_grad());
  auto gxx = autograd::grad({sum(gx[0])}, {x});  // 6 x
  GRAFT_REQUIRE_CLOSE(gxx[0], x.detach() * 6.0, kTolF64);
}

namespace {
struct ScaleBy : autograd::Function<ScaleBy> {
  static std::string name() { return "ScaleBy"; }
  static Tensor forward(autograd::Context& ctx, const Tensor& x, double k) {
    ctx.saved_data["k"] = k;
    return x * k;
  }
  static std::vector<Tensor> backward(autograd::Context& ctx, std::vector<Tensor> g) {
    return {g[0] * ctx.saved_data["k"]};
  }
};
struct Identity : autograd::Function<Identity> {
  static std::string name() { return "Identity"; }
  static Tensor forward(autograd::Context&, const Tensor& x) { return x; }
  static std::vector<Tensor> backward(autograd::Context&, std::vector<Tensor> g) { return {neg(g[0])}; }
};
}  // namespace

TEST_CASE("custom Function: forward and backward", "[autograd]") {
  Tensor x = rand_in({5}).set_requires_grad();
  Tensor y = ScaleBy::apply(x, 3.0);
  REQUIRE(y.grad_fn()->name() == "ScaleBy");
  sum(y).backward();
  GRAFT_REQUIRE_CLOSE(x.grad(), full({5}, 3.0, DType::Float64), kTolF64);
  // An identity forward returns a fresh handle: the leaf keeps being a leaf.
  Tensor z = Identity::apply(x);
  REQUIRE(x.is_leaf());
  REQUIRE(!z.is_leaf());
  auto g = autograd::grad({sum(z)}, {x});
  GRAFT_REQUIRE_CLOSE(g[0], full({5}, -1.0, DType::Float64), kTolF64);
}

TEST_CASE("views share storage and strides", "[tensor]") {
  Tensor a = arange(0, 24, 1, DType::Float32).reshape({2, 3, 4});
  Tensor t = a.transpose(0, 2);
  REQUIRE(t.shape() == Shape{4, 3, 2});
  REQUIRE(!t.is_contiguous());
  REQUIRE(t.storage() == a.storage());
  REQUIRE(t.contiguous().is_contiguous());
  REQUIRE(a.narrow(2, 1, 2).to_vector()[0] == 1.0);
  REQUIRE(a.select(1, 2).shape() == Shape{2, 4});
  REQUIRE(a.select(1, 2).to_vector()[0] == 8.0);
  REQUIRE(a.slice(2, 0, 4, 2).to_vector() == std::vector<double>{0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22});
  require_error([&] { (void)t.view({24}); }, {"view", "reshape"});
  REQUIRE(t.reshape({24}).shape() == Shape{24});
  require_error([&] { (void)a.reshape({5, 5}); }, {"reshape", "[5, 5]", "[2, 3, 4]"});
}

TEST_CASE("binary op shape mismatch names op and shapes", "[errors]") {
  require_error([] { (void)add(zeros({2, 3}), zeros({4})); }, {"add", "[2, 3]", "[4]"});
  require_error([] { (void)exp(zeros({2}, DType::Int64)); }, {"exp", "int64"});
}

TEST_CASE("dtype conversions round-trip", "[tensor]") {
  Tensor x = from_vector(std::vector<double>{1.5, -2.25, 3.0e-3, 65504.0}, {4});
  for (DType dt : {DType::Float32, DType::Float64, DType::BFloat16, DType::Float16}) {
    Tensor y = x.to(dt).to(DType::Float64);
    const auto v = y.to_vector();
    REQUIRE(v[0] == 1.5);
    REQUIRE(v[1] == -2.25);
  }
  REQUIRE(x.to(DType::Int32).to_vector() == std::vector<double>{1, -2, 0, 65504});
  REQUIRE(Float16(1e-7f) != Float16(0.0f));  // subnormal half
  REQUIRE(float(BFloat16(1.0f + 1.0f / 256)) == 1.0f);  // ties to even
}

TEST_CASE("every differentiable op has a gradient check", "[coverage]") {
  // GRADCHECK_CASE registers its op name at static initialization, so this sees every file's cases.
  const auto& checked = gradcheck_registry();
  int64_t differentiable = 0;
  for (const auto& [name, info] : op_registry()) {
    if (!info.differentiable) continue;
    ++differentiable;
    INFO("op without a GRADCHECK_CASE: " << name);
    CHECK(checked.count(name) == 1);
  }
  for (const auto& name : checked) {
    INFO("GRADCHECK_CASE names an op that is not registered: " << name);
    CHECK(op_registry().count(name) == 1);
  }
  REQUIRE(differentiable >= 60);
}
