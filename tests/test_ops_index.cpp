// Joining/indexing ops, embedding, dropout, losses and attention: gradient checks, values against
// PyTorch 1.13 (numbers printed by torch for the deterministic inputs built by seq()), and errors.
#include <cmath>

#include "harness.hpp"

using namespace graft;
using namespace graft_test;

namespace {
// A float64 tensor with element i = f(i) (row-major), to rebuild the same input in PyTorch.
template <class F>
Tensor seq(const std::vector<int64_t>& dims, F f) {
  int64_t n = 1;
  for (int64_t d : dims) n *= d;
  std::vector<double> v(static_cast<size_t>(n));
  for (size_t i = 0; i < v.size(); ++i) v[i] = f(double(i));
  return from_vector(v, Shape(dims), DType::Float64);
}
Tensor ints(const std::vector<int64_t>& v, const Shape& s) { return from_vector(v, s, DType::Int64); }
Tensor doubles(const std::vector<double>& v, const Shape& s) { return from_vector(v, s, DType::Float64); }
}  // namespace

// ---- cat / stack / split ---------------------------------------------------------------------------
GRADCHECK_CASE("cat", "middle dim, one input non-contiguous") {
  gradcheck1([](auto& in) { return cat({in[0], in[1], in[2]}, 1); },
             {rand_noncontig({2, 3, 4}), rand_in({2, 2, 4}, -1, 1, 3), rand_in({2, 1, 4}, -1, 1, 4)});
}
GRADCHECK_CASE("cat", "negative dim, mixed-in skipped [0] tensor") {
  gradcheck1([](auto& in) { return concat({in[0], in[1], in[2]}, -1); },
             {rand_in({3, 2}), rand_in({0}, -1, 1, 3), rand_noncontig({3, 4})}, {0, 2});
}
GRADCHECK_CASE("stack", "middle dim, one input non-contiguous") {
  gradcheck1([](auto& in) { return stack({in[0], in[1]}, 1); }, {rand_noncontig({3, 4}), rand_in({3, 4}, -1, 1, 5)});
}
GRADCHECK_CASE("split", "by chunk size, last chunk smaller") {
  gradcheck([](auto& in) { return split(in[0] * in[0], 2, 1); }, {rand_noncontig({3, 5})});
}
GRADCHECK_CASE("split", "by sizes") {
  gradcheck([](auto& in) { return split(in[0], std::vector<int64_t>{1, 0, 3}, -2); }, {rand_in({2, 4, 3})});
}

TEST_CASE("cat/stack/split values and shapes", "[index]") {
  Tensor a = arange(0, 6, 1, DType::Float32).reshape({2, 3});
  Tensor b = arange(6, 10, 1, DType::Float32).reshape({2, 2});
  Tensor c = cat({a, b}, 1);
  REQUIRE(c.shape() == Shape{2, 5});
  REQUIRE(c.to_vector() == std::vector<double>{0, 1, 2, 6, 7, 3, 4, 5, 8, 9});
  Tensor s = stack({a, a * 2.0}, 2);
  REQUIRE(s.shape() == Shape{2, 3, 2});
  REQUIRE(s.to_vector() == std::vector<double>{0, 0, 1, 2, 2, 4, 3, 6, 4, 8, 5, 10});
  REQUIRE(stack({a, a}, -1).shape() == Shape{2, 3, 2});
  // dtype promotion: int64 + float32 -> float32
  Tensor m = cat({arange(3), tensor({0.5})});
  REQUIRE(m.dtype() == DType::Float32);
  REQUIRE(m.to_vector() == std::vector<double>{0, 1, 2, 0.5});
  // int tensors concatenate too (token ids)
  REQUIRE(cat({arange(2), arange(3)}).to_vector() == std::vector<double>{0, 1, 0, 1, 2});
  auto parts = split(arange(5), 2);
  REQUIRE(parts.size() == 3);
  REQUIRE(parts[2].to_vector() == std::vector<double>{4});
  REQUIRE(parts[1].storage() == parts[0].storage());  // views
  REQUIRE(split(zeros({0}), 2).size() == 1);
  auto pieces = split(a, std::vector<int64_t>{2, 1}, 1);
  REQUIRE(pieces[1].to_vector() == std::vector<double>{2, 5});
}

TEST_CASE("cat/stack/split bad inputs", "[index][errors]") {
  require_error([] { (void)cat({zeros({2, 3}), zeros({2, 4}), zeros({3, 4})}, 1); },
                {"cat", "tensor 2", "[3, 4]", "[2, 3]", "dim 1"});
  require_error([] { (void)cat({zeros({2, 3}), zeros({2, 3, 1})}); }, {"cat", "tensor 1", "[2, 3, 1]", "[2, 3]"});
  require_error([] { (void)cat({}); }, {"cat", "non-empty"});
  require_error([] { (void)stack({zeros({2, 3}), zeros({3, 2})}); }, {"stack", "tensor 1", "[3, 2]", "[2, 3]"});
  require_error([] { (void)split(zeros({5}), std::vector<int64_t>{2, 2}); }, {"split", "4", "5"});
  require_error([] { (void)split(zeros({5}), 0); }, {"split", "positive"});
}

// ---- index_select / gather -------------------------------------------------------------------------
GRADCHECK_CASE("index_select", "duplicate indices, non-contiguous input, int32 index") {
  Tensor idx = ints({2, 0, 2, 3, 2}, {5});
  gradcheck1([&](auto& in) { return index_select(in[0], 1, idx); }, {rand_noncontig({3, 4, 2})});
  Tensor idx32 = from_vector(std::vector<int64_t>{1, 1, 0}, {3}, DType::Int32);
  gradcheck1([&](auto& in) { return index_select(in[0], -1, idx32); }, {rand_in({2, 3})});
}
GRADCHECK_CASE("gather", "duplicate indices along dim 1 and dim 0") {
  Tensor i1 = ints({0, 3, 3, 1, 2, 2, 0, 2, 1, 1, 3, 0}, {3, 4});
  gradcheck1([&](auto& in) { return gather(in[0], 1, i1); }, {rand_noncontig({3, 5})});
  Tensor i0 = ints({1, 1, 0, 2, 1, 0}, {2, 3});  // smaller than x in dim 1
  gradcheck1([&](auto& in) { return gather(in[0], 0, i0); }, {rand_in({3, 4})});
}

TEST_CASE("index_select and gather values", "[index]") {
  Tensor x = arange(0, 12, 1, DType::Float32).reshape({3, 4});
  REQUIRE(index_select(x, 0, ints({2, 0}, {2})).to_vector() == std::vector<double>{8, 9, 10, 11, 0, 1, 2, 3});
  REQUIRE(index_select(x, 1, ints({3, 3}, {2})).to_vector() == std::vector<double>{3, 3, 7, 7, 11, 11});
  Tensor g = gather(x, 1, ints({0, 0, 3, 2, 1, 1}, {3, 2}));
  REQUIRE(g.shape() == Shape{3, 2});
  REQUIRE(g.to_vector() == std::vector<double>{0, 0, 7, 6, 9, 9});
  // index_add backward: duplicates accumulate
  Tensor w = rand_in({4}).set_requires_grad();
  sum(index_select(w, 0, ints({1, 1, 3}, {3}))).backward();
  REQUIRE(w.grad().to_vector() == std::vector<double>{0, 2, 0, 1});
}

TEST_CASE("index_select and gather bad inputs", "[index][errors]") {
  Tensor x = zeros({3, 4});
  require_error([&] { (void)index_select(x, 1, ints({0, 4}, {2})); },
                {"index_select", "index 4", "position [1]", "[0, 3]"});
  require_error([&] { (void)index_select(x, 0, ints({-1}, {1})); }, {"index_select", "index -1", "[0, 2]"});
  require_error([&] { (void)index_select(x, 0, zeros({2})); }, {"index_select", "int64 or int32", "float32"});
  require_error([&] { (void)gather(x, 1, ints({0, 1, 5, 0}, {2, 2})); },
                {"gather", "index 5", "position [1, 0]", "[0, 3]"});
  require_error([&] { (void)gather(x, 1, ints({0}, {1})); }, {"gather", "same number of dims"});
  require_error([&] { (void)gather(x, 1, ints({0, 0, 0, 0, 0, 0, 0, 0}, {4, 2})); }, {"gather", "[4, 2]", "[3, 4]"});
}

// ---- embedding ----------------------------------------------------------------------------------------
GRADCHECK_CASE("embedding", "repeated indices, padding_idx") {
  Tensor idx = ints({1, 4, 1, 0, 3, 4}, {2, 3});
  gradcheck1([&](auto& in) { return embedding(idx, in[0]); }, {rand_in({5, 3})});
  // With padding_idx = 4 the padding row gets no gradient; zeroing its values in the function makes
  // the finite difference agree (the row no longer affects the output either).
  Tensor keep = doubles({1, 1, 1, 1, 0}, {5, 1});
  gradcheck1([&](auto& in) { return embedding(idx, in[0] * keep, -1); }, {rand_in({5, 3})});
}

TEST_CASE("embedding values and padding_idx gradient", "[embedding]") {
  Tensor w = rand_in({5, 3}).set_requires_grad();
  Tensor idx = from_vector(std::vector<int64_t>{1, 4, 1, 0}, {2, 2}, DType::Int32);
  Tensor e = embedding(idx, w, 1);
  REQUIRE(e.shape() == Shape{2, 2, 3});
  GRAFT_REQUIRE_CLOSE(e.select(0, 1).select(0, 0), w.detach().select(0, 1), kTolF64);  // forward uses the row
  sum(e * 2.0).backward();
  const auto g = w.grad().to_vector();
  const std::vector<double> expected{2, 2, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2, 2, 2};
  REQUIRE(g == expected);
}

TEST_CASE("embedding bad inputs", "[embedding][errors]") {
  Tensor w = zeros({10, 4});
  require_error([&] { (void)embedding(ints({3, 12}, {2}), w); },
                {"embedding", "index 12", "position [1]", "10 rows", "[0, 9]"});
  require_error([&] { (void)embedding(ints({-1}, {1}), w); }, {"embedding", "index -1"});
  require_error([&] { (void)embedding(ints({0}, {1}), w, 10); }, {"embedding", "padding_idx 10", "[-10, 9]"});
  require_error([&] { (void)embedding(ints({0}, {1}), zeros({10})); }, {"embedding", "2-D", "[10]"});
}

// ---- dropout ---------------------------------------------------------------------------------------------
GRADCHECK_CASE("dropout", "fixed generator seed") {
  gradcheck1(
      [](auto& in) {
        Generator g(42);  // re-seeded on every call: the same mask for each evaluation
        return dropout(in[0], 0.4, true, g);
      },
      {rand_noncontig({4, 5})});
}

TEST_CASE("dropout semantics", "[dropout]") {
  Tensor x = rand_in({200, 50}, 0.5, 1.5);
  REQUIRE(dropout(x, 0.5, false).is_same(x));
  REQUIRE(dropout(x, 0.0, true).is_same(x));
  const auto z = dropout(x, 1.0, true).to_vector();
  for (double v : z) REQUIRE(v == 0.0);
  Generator g1(9), g2(9);
  const auto a = dropout(x, 0.3, true, g1).to_vector(), b = dropout(x, 0.3, true, g2).to_vector();
  REQUIRE(a == b);  // a seed fixes the mask
  const auto xv = x.to_vector();
  int64_t kept = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    if (a[i] == 0.0) continue;
    ++kept;
    REQUIRE(std::abs(a[i] - xv[i] / 0.7) <= 1e-12);  // kept values are scaled by 1 / (1 - p)
  }
  const double frac = double(kept) / double(a.size());
  REQUIRE(std::abs(frac - 0.7) < 0.02);  // 10000 draws: sd ~ 0.0046
  require_error([&] { (void)dropout(x, 1.5, true); }, {"dropout", "[0, 1]", "1.5"});
}

// ---- cross_entropy -----------------------------------------------------------------------------------------
namespace {
Tensor ce_logits_2d() { return seq({4, 5}, [](double i) { return 2 * std::sin(0.7 * i + 0.3); }); }
Tensor ce_weight_2d() { return seq({5}, [](double c) { return 0.5 + 0.25 * c; }); }
Tensor ce_logits_3d() { return seq({2, 3, 4}, [](double i) { return 1.5 * std::cos(0.37 * i); }); }
}  // namespace

GRADCHECK_CASE("cross_entropy", "[N, C] with label smoothing, ignore_index and weights, all reductions") {
  Tensor t = ints({1, -100, 4, 0, 4, 2}, {6});
  Tensor w = ce_weight_2d();
  gradcheck(
      [&](auto& in) {
        return std::vector<Tensor>{cross_entropy(in[0], t, Reduction::None, -100, 0.2, w),
                                   cross_entropy(in[0], t, Reduction::Mean, -100, 0.2, w),
                                   cross_entropy(in[0], t, Reduction::Sum, -100, 0.2, w),
                                   cross_entropy(in[0], t)};
      },
      {rand_noncontig({6, 5}, -2, 2)});
}
GRADCHECK_CASE("cross_entropy", "[N, C, d] with label smoothing, ignore_index and weights") {
  Tensor t = ints({0, 2, 1, 1, 2, 2, 0, 1, 1, 0}, {2, 5});
  Tensor w = doubles({1.0, 2.0, 0.5}, {3});
  gradcheck(
      [&](auto& in) {
        return std::vector<Tensor>{cross_entropy(in[0], t, Reduction::Mean, 1, 0.15, w),
                                   cross_entropy(in[0], t, Reduction::None, 1, 0.15, w),
                                   cross_entropy(in[0], t, Reduction::Mean, 1, 0.15)};
      },
      {rand_noncontig({2, 3, 5}, -2, 2)});
}

TEST_CASE("cross_entropy matches PyTorch", "[loss]") {
  Tensor x = ce_logits_2d();
  Tensor t = ints({1, -100, 4, 0}, {4});
  Tensor w = ce_weight_2d();
  GRAFT_REQUIRE_CLOSE(cross_entropy(x, t, Reduction::None, -100, 0.2, w),
                      doubles({1.1483511922558929, 0.0, 5.458353954944538, 2.039288646585037}, {4}), kTolF64);
  GRAFT_REQUIRE_CLOSE(cross_entropy(x, t, Reduction::Mean, -100, 0.2, w), doubles({3.143997743194716}, {}), kTolF64);
  GRAFT_REQUIRE_CLOSE(cross_entropy(x, t, Reduction::Sum, -100, 0.2, w), doubles({8.64599379378547}, {}), kTolF64);
  GRAFT_REQUIRE_CLOSE(cross_entropy(x, ints({1, 3, 4, 0}, {4})), doubles({2.8297096509037876}, {}), kTolF64);
  // float32 through the same kernel
  GRAFT_REQUIRE_CLOSE(cross_entropy(x.to(DType::Float32), t, Reduction::Mean, -100, 0.2, w.to(DType::Float32)),
                      doubles({3.143997743194716}, {}).to(DType::Float32), kTolF32);

  Tensor x3 = ce_logits_3d();
  Tensor t3 = ints({0, 2, -100, 1, 2, 2, 0, -100}, {2, 4});
  Tensor w3 = doubles({1.0, 2.0, 0.5}, {3});
  GRAFT_REQUIRE_CLOSE(cross_entropy(x3, t3, Reduction::None, -100, 0.1, w3),
                      doubles({0.4124604517808764, 1.5736859726917616, 0.0, 4.233926633523616, 0.687669702189994,
                               0.9204152373398751, 1.2100036694795246, 0.0},
                              {2, 4}),
                      kTolF64);
  GRAFT_REQUIRE_CLOSE(cross_entropy(x3, t3, Reduction::Mean, -100, 0.1, w3), doubles({1.6433021212737544}, {}),
                      kTolF64);
  GRAFT_REQUIRE_CLOSE(cross_entropy(x3, t3, Reduction::Sum, -100, 0.1, w3), doubles({9.038161667005648}, {}),
                      kTolF64);
  // [C] logits with a 0-d target
  Tensor xc = seq({5}, [](double i) { return std::sin(i); });
  Tensor l = cross_entropy(xc, ints({3}, {}));
  REQUIRE(l.dim() == 0);
  GRAFT_REQUIRE_CLOSE(l, doubles({1.8634742695233615}, {}), kTolF64);
  // every target ignored: mean is 0/0 = NaN, as in PyTorch
  REQUIRE(std::isnan(cross_entropy(x, ints({-100, -100, -100, -100}, {4})).item()));
}

TEST_CASE("cross_entropy bad inputs", "[loss][errors]") {
  Tensor x = zeros({3, 5});
  require_error([&] { (void)cross_entropy(x, ints({0, 5, 1}, {3})); },
                {"cross_entropy", "target 5", "position [1]", "5 classes", "[0, 4]"});
  require_error([&] { (void)cross_entropy(x, ints({0, -3, 1}, {3})); }, {"cross_entropy", "target -3"});
  require_error([&] { (void)cross_entropy(zeros({2, 3, 4}), ints({0, 1, 2, 0, 1, 7, 0, 0}, {2, 4})); },
                {"cross_entropy", "target 7", "position [1, 1]", "3 classes"});
  require_error([&] { (void)cross_entropy(x, ints({0, 1}, {2})); }, {"cross_entropy", "[2]", "[3, 5]", "[3]"});
  require_error([&] { (void)cross_entropy(x, zeros({3})); }, {"cross_entropy", "int64", "float32"});
  require_error([&] { (void)cross_entropy(x, ints({0, 1, 2}, {3}), Reduction::Mean, -100, 0.0, zeros({4})); },
                {"cross_entropy", "weight", "[5]", "[4]"});
}

// ---- binary_cross_entropy_with_logits -------------------------------------------------------------------------
GRADCHECK_CASE("binary_cross_entropy_with_logits", "pos_weight, gradient in logits and target") {
  Tensor pw = doubles({0.5, 1.0, 2.0, 3.0}, {4});
  gradcheck(
      [&](auto& in) {
        return std::vector<Tensor>{
            binary_cross_entropy_with_logits(in[0], in[1], Reduction::None, pw),
            binary_cross_entropy_with_logits(in[0], in[1], Reduction::Mean, pw),
            binary_cross_entropy_with_logits(in[0], in[1], Reduction::Sum),
        };
      },
      {rand_noncontig({3, 4}, -4, 4), rand_in({3, 4}, 0, 1, 7)});
}

TEST_CASE("binary_cross_entropy_with_logits matches PyTorch", "[loss]") {
  Tensor x = seq({3, 4}, [](double i) { return 3 * std::sin(1.3 * i + 0.1); });
  Tensor t = seq({3, 4}, [](double i) { return 0.5 + 0.5 * std::cos(2.1 * i); });
  Tensor pw = doubles({0.5, 1.0, 2.0, 3.0}, {4});
  GRAFT_REQUIRE_CLOSE(binary_cross_entropy_with_logits(x, t, Reduction::None, pw),
                      doubles({0.27728397368679064, 2.2751264220281544, 1.262629172216207, 7.105562872832603,
                               0.36968297222171875, 1.0208045209460208, 0.09830985123302295, 1.119373688318971,
                               0.41551788074830687, 2.196909105430591, 1.4221145427722504, 2.1775615484309085},
                              {3, 4}),
                      kTolF64);
  GRAFT_REQUIRE_CLOSE(binary_cross_entropy_with_logits(x, t, Reduction::Mean, pw), doubles({1.6450730459054619}, {}),
                      kTolF64);
  GRAFT_REQUIRE_CLOSE(binary_cross_entropy_with_logits(x, t, Reduction::Sum, pw), doubles({19.740876550865543}, {}),
                      kTolF64);
  GRAFT_REQUIRE_CLOSE(binary_cross_entropy_with_logits(x, t), doubles({1.2981230625664482}, {}), kTolF64);
  // stable for large logits
  Tensor big = doubles({1000.0, -1000.0}, {2});
  GRAFT_REQUIRE_CLOSE(binary_cross_entropy_with_logits(big, doubles({0, 1}, {2}), Reduction::None),
                      doubles({1000.0, 1000.0}, {2}), kTolF64);
  require_error([&] { (void)binary_cross_entropy_with_logits(x, zeros({4, 3}, DType::Float64)); },
                {"binary_cross_entropy_with_logits", "[4, 3]", "[3, 4]"});
  require_error([&] { (void)binary_cross_entropy_with_logits(x, t, Reduction::Mean, zeros({3}, DType::Float64)); },
                {"binary_cross_entropy_with_logits", "pos_weight", "[3]"});
}

// ---- mse_loss ---------------------------------------------------------------------------------------------------
GRADCHECK_CASE("mse_loss", "all reductions, target broadcast") {
  gradcheck(
      [](auto& in) {
        return std::vector<Tensor>{mse_loss(in[0], in[1], Reduction::None), mse_loss(in[0], in[1], Reduction::Mean),
                                   mse_loss(in[0], in[1], Reduction::Sum)};
      },
      {rand_noncontig({3, 4}), rand_in({4}, -1, 1, 9)});
}

TEST_CASE("mse_loss matches PyTorch", "[loss]") {
  Tensor x = seq({3, 4}, [](double i) { return std::sin(i); });
  Tensor t = seq({4}, [](double i) { return std::cos(i); });
  GRAFT_REQUIRE_CLOSE(mse_loss(x, t, Reduction::Mean), doubles({1.0187656363588342}, {}), kTolF64);
  GRAFT_REQUIRE_CLOSE(mse_loss(x, t, Reduction::Sum), doubles({12.22518763630601}, {}), kTolF64);
  Tensor none = mse_loss(x, t, Reduction::None);
  REQUIRE(none.shape() == Shape{3, 4});
  GRAFT_REQUIRE_CLOSE(none.select(0, 1),
                      doubles({3.086355007520163, 2.2476803397715095, 0.018695458886494473, 2.712540140418564}, {4}),
                      kTolF64);
  require_error([&] { (void)mse_loss(x, zeros({3}, DType::Float64)); }, {"mse_loss", "[3, 4]", "[3]"});
}

// ---- scaled_dot_product_attention ----------------------------------------------------------------------------
namespace {
Tensor attn_q() { return seq({2, 2, 3, 4}, [](double i) { return std::sin(0.31 * i + 0.2); }); }
Tensor attn_k() { return seq({2, 2, 5, 4}, [](double i) { return std::cos(0.17 * i - 0.4); }); }
Tensor attn_v() { return seq({2, 2, 5, 6}, [](double i) { return std::sin(0.23 * i + 1.1); }); }
// [2, 1, 1, 5] padding mask: batch 1 has its last two keys padded.
Tensor padding_mask() {
  std::vector<int64_t> m{1, 1, 1, 1, 1, 1, 1, 1, 0, 0};
  return from_vector(m, {2, 1, 1, 5}, DType::Bool);
}
double sum_all(const Tensor& t) {
  double s = 0;
  for (double v : t.to_vector()) s += v;
  return s;
}
}  // namespace

GRADCHECK_CASE("scaled_dot_product_attention", "bool padding mask [B, 1, 1, S], L != S, Ev != E") {
  Tensor mask = padding_mask();
  gradcheck1([&](auto& in) { return scaled_dot_product_attention(in[0], in[1], in[2], mask); },
             {rand_noncontig({2, 2, 3, 4}), rand_in({2, 2, 5, 4}, -1, 1, 3), rand_in({2, 2, 5, 6}, -1, 1, 4)});
}
GRADCHECK_CASE("scaled_dot_product_attention", "float mask, explicit scale, broadcast k/v heads") {
  Tensor fm = seq({3, 5}, [](double i) { return -0.5 * std::abs(std::sin(i)); });
  gradcheck1([&](auto& in) { return scaled_dot_product_attention(in[0], in[1], in[2], fm, 0.0, false, 0.7); },
             {rand_in({2, 2, 3, 4}), rand_in({2, 1, 5, 4}, -1, 1, 3), rand_noncontig({1, 5, 6}, -1, 1, 4)});
}
GRADCHECK_CASE("scaled_dot_product_attention", "causal, L != S") {
  gradcheck1([&](auto& in) { return scaled_dot_product_attention(in[0], in[1], in[2], Tensor(), 0.0, true); },
             {rand_in({2, 4, 3}), rand_in({2, 6, 3}, -1, 1, 3), rand_in({2, 6, 2}, -1, 1, 4)});
}
GRADCHECK_CASE("scaled_dot_product_attention", "dropout with a re-seeded default generator") {
  gradcheck1(
      [&](auto& in) {
        manual_seed(5);
        return scaled_dot_product_attention(in[0], in[1], in[2], Tensor(), 0.3);
      },
      {rand_in({2, 3, 4}), rand_in({2, 5, 4}, -1, 1, 3), rand_in({2, 5, 3}, -1, 1, 4)});
}

TEST_CASE("scaled_dot_product_attention matches PyTorch", "[attention]") {
  Tensor q = attn_q(), k = attn_k(), v = attn_v();
  Tensor o = scaled_dot_product_attention(q, k, v, padding_mask());
  REQUIRE(o.shape() == Shape{2, 2, 3, 6});
  REQUIRE(std::abs(sum_all(o) - -6.050173826896807) <= 1e-10);
  GRAFT_REQUIRE_CLOSE(o.select(0, 1).select(0, 1).select(0, 2),
                      doubles({-0.566332553253599, -0.45066503512628364, -0.31126224695915927, -0.15546614466971115,
                               0.008517925707275886, 0.17205338070236284},
                              {6}),
                      kTolF64);
  Tensor fm = seq({3, 5}, [](double i) { return -0.5 * std::abs(std::sin(i)); });
  Tensor o2 = scaled_dot_product_attention(q, k, v, fm, 0.0, false, 0.3);
  REQUIRE(std::abs(sum_all(o2) - 7.569071245208971) <= 1e-10);
  GRAFT_REQUIRE_CLOSE(o2.select(0, 0).select(0, 1).select(0, 1),
                      doubles({0.1493282712831917, 0.08417903642752717, 0.014596326583640531, -0.05575513105749838,
                               -0.1231701215032533, -0.18409808529539484},
                              {6}),
                      kTolF64);
  Tensor o3 = scaled_dot_product_attention(q, k, v, Tensor(), 0.0, true);
  REQUIRE(std::abs(sum_all(o3) - -0.017727880417878428) <= 1e-10);
  GRAFT_REQUIRE_CLOSE(o3.select(0, 0).select(0, 0).select(0, 0),
                      doubles({0.8912073600614354, 0.9711483779210446, 0.9999417202299663, 0.9760709219825242,
                               0.9007931915226273, 0.7780731968879212},
                              {6}),
                      kTolF64);
  // float32 agrees with float64 within the float32 tolerance
  Tensor o32 = scaled_dot_product_attention(q.to(DType::Float32), k.to(DType::Float32), v.to(DType::Float32),
                                            padding_mask());
  GRAFT_REQUIRE_CLOSE(o32, o.to(DType::Float32), kTolF32);
}

TEST_CASE("scaled_dot_product_attention: a fully masked row gives zeros and no gradient", "[attention]") {
  Tensor q = rand_in({1, 2, 3}).set_requires_grad();
  Tensor k = rand_in({1, 4, 3}, -1, 1, 3).set_requires_grad();
  Tensor v = rand_in({1, 4, 2}, -1, 1, 4).set_requires_grad();
  std::vector<int64_t> m{1, 0, 1, 0, 0, 0, 0, 0};  // query 1 sees no key
  Tensor mask = from_vector(m, {1, 2, 4}, DType::Bool);
  Tensor o = scaled_dot_product_attention(q, k, v, mask);
  const auto ov = o.to_vector();
  REQUIRE(ov[2] == 0.0);
  REQUIRE(ov[3] == 0.0);
  REQUIRE(std::isfinite(ov[0]));
  sum(o).backward();
  const auto gq = q.grad().to_vector();
  REQUIRE(gq[3] == 0.0);
  REQUIRE(gq[4] == 0.0);
  REQUIRE(gq[5] == 0.0);
  for (double g : k.grad().to_vector()) REQUIRE(std::isfinite(g));
}

TEST_CASE("scaled_dot_product_attention bad inputs", "[attention][errors]") {
  Tensor q = zeros({2, 3, 4}), k = zeros({2, 5, 4}), v = zeros({2, 5, 6});
  require_error([&] { (void)scaled_dot_product_attention(q, zeros({2, 5, 8}), v); },
                {"scaled_dot_product_attention", "E = 4", "8", "[2, 5, 8]"});
  require_error([&] { (void)scaled_dot_product_attention(q, k, zeros({2, 4, 6})); },
                {"scaled_dot_product_attention", "S = 5", "4"});
  require_error([&] { (void)scaled_dot_product_attention(q, k, v, ones({3, 5}, DType::Bool), 0.0, true); },
                {"scaled_dot_product_attention", "is_causal"});
  require_error([&] { (void)scaled_dot_product_attention(q, k, v, ones({4, 5}, DType::Bool)); },
                {"scaled_dot_product_attention", "[4, 5]", "[2, 3, 5]"});
  require_error([&] { (void)scaled_dot_product_attention(q, k.to(DType::Float64), v); },
                {"scaled_dot_product_attention", "float64"});
}

// ---- second derivatives are refused, not silently wrong ------------------------------------------------------
TEST_CASE("create_graph through the index/loss/attention ops throws", "[autograd][errors]") {
  Tensor x = rand_in({3, 4}).set_requires_grad();
  Tensor l = cross_entropy(x, ints({0, 1, 2}, {3}));
  require_error([&] { (void)autograd::grad({l}, {x}, {}, false, true); }, {"CrossEntropyBackward", "second derivative"});
  // linear ops are fine under create_graph while the incoming gradient carries no history
  Tensor y = sum(index_select(x, 0, ints({2, 2}, {2})));
  auto g = autograd::grad({y}, {x}, {}, false, true);
  REQUIRE(g[0].to_vector()[8] == 2.0);
}

// ---- kernels write every output element (outputs poisoned with NaN first) -------------------------------------
TEST_CASE("index/loss/attention kernels write every output element", "[kernels]") {
  auto no_nan = [](const Tensor& t) {
    for (double v : t.to_vector()) REQUIRE(!std::isnan(v));
  };
  Tensor x = rand_in({3, 4, 2});
  Tensor idx = ints({3, 0, 3}, {3});
  Tensor out = empty({3, 3, 2}, DType::Float64);
  poison(out);
  kernels::cpu::index_select_forward(out, x, idx, 1);
  no_nan(out);
  Tensor gidx = ints({0, 3, 3, 1, 2, 2}, {3, 1, 2});
  Tensor gout = empty({3, 1, 2}, DType::Float64);
  poison(gout);
  kernels::cpu::gather_forward(gout, x, gidx, 1);
  no_nan(gout);
  Tensor cout = empty({3, 7, 2}, DType::Float64);
  poison(cout);
  kernels::cpu::cat_forward(cout, {x, rand_in({3, 3, 2})}, 1);
  no_nan(cout);
  Tensor eout = empty({3, 2}, DType::Float64);
  poison(eout);
  kernels::cpu::embedding_forward(eout, rand_in({5, 2}), idx.select(0, 0).expand({3}).contiguous());
  no_nan(eout);
  Tensor dout = empty({3, 4, 2}, DType::Float64), mask = empty({3, 4, 2}, DType::Float64);
  poison(dout);
  poison(mask);
  Generator g(3);
  kernels::cpu::dropout_forward(dout, mask, x, 0.5, g);
  no_nan(dout);
  no_nan(mask);

  Tensor logits = rand_in({2, 3, 4}), target = ints({0, 2, -100, 1, 2, 2, 0, 1}, {2, 4});
  Tensor loss = empty({8}, DType::Float64), lse = empty({8}, DType::Float64), dlogits = empty({2, 3, 4}, DType::Float64);
  poison(loss);
  poison(lse);
  poison(dlogits);
  kernels::cpu::cross_entropy_forward(loss, lse, logits, target, Tensor(), -100, 0.1);
  kernels::cpu::cross_entropy_backward(dlogits, rand_in({8}), logits, lse, target, Tensor(), -100, 0.1);
  no_nan(loss);
  no_nan(dlogits);

  Tensor q = rand_in({2, 3, 4}), k = rand_in({2, 5, 4}, -1, 1, 3), v = rand_in({2, 5, 6}, -1, 1, 4);
  Tensor o = empty({2, 3, 6}, DType::Float64), p = empty({2, 3, 5}, DType::Float64);
  Tensor dq = empty({2, 3, 4}, DType::Float64), dk = empty({2, 5, 4}, DType::Float64), dv = empty({2, 5, 6}, DType::Float64);
  for (const Tensor& t : {o, p, dq, dk, dv}) poison(t);
  kernels::cpu::attention_forward(o, p, q, k, v, Tensor(), Tensor(), true, 0.5);
  kernels::cpu::attention_backward(dq, dk, dv, rand_in({2, 3, 6}, -1, 1, 5), q, k, v, p, Tensor(), 0.5);
  for (const Tensor& t : {o, p, dq, dk, dv}) no_nan(t);
}
