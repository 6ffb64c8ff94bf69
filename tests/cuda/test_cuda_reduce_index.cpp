// [cuda] the row reductions (var, max / min with indices, argmax, amax / amin, clip_grad_norm_'s norm)
// and the indexing kernels (cat / stack, index_select, gather, pad) against the CPU, forward and
// backward, contiguous and non-contiguous. Shapes are picked to reach every thread mapping of
// kernels/graft/kernels/cuda/reduce_plan.hpp (a thread, a warp, one block, several chunks per row;
// rows that are strided columns) and, for the copies, every unit width of index_plan.hpp (16-byte
// vectors down to single bytes). The selections (max, amax, the copies) and the deterministic
// backward passes promise the CPU's bits; they are compared exactly wherever the CPU side runs the
// plain reference (float64, integers); float32 CPU results come from the AVX kernels and are
// compared within the float32 tolerance.
#include <cmath>
#include <limits>

#include "graft/optim/clip.hpp"
#include "op_harness.hpp"

using namespace graft;
using cuda_test::check_op;
using cuda_test::expect_close;
using cuda_test::expect_exact;
using cuda_test::gpu;
using cuda_test::OpOptions;
using cuda_test::randn_leaf;

namespace {
// A leaf of small integers (-3 .. 2) as floats: ties everywhere, the case the index rules decide.
Tensor tie_leaf(const Shape& s, uint64_t seed, DType dt = DType::Float32) {
  Generator g(seed);
  return randint(-3, 3, s, DType::Int64, g).to(dt).set_requires_grad();
}

OpOptions exact() {
  OpOptions o;
  o.exact = true;
  return o;
}

// The message of the graft::Error that f throws ("" if none).
template <class F>
std::string error_of(F&& f) {
  try {
    f();
  } catch (const std::exception& e) {
    return e.what();
  }
  return "";
}

// The index moved to the device of `like` by the cross-device copy alone (contiguous int64 both
// sides), so the kernels under test are the only ones involved; check_op would make an index input
// non-contiguous and compact it on the GPU again (the case of its own, at the end of this file).
Tensor on_device_of(const Tensor& index, const Tensor& like) { return index.to(like.device()); }

// Element-wise: the same NaN / infinity pattern, and the finite elements within the float tolerance.
void expect_same_nonfinite(const std::string& what, const Tensor& gpu_result, const Tensor& cpu_result) {
  INFO(what);
  const std::vector<double> a = gpu_result.cpu().to_vector(), e = cpu_result.to_vector();
  REQUIRE(a.size() == e.size());
  for (size_t i = 0; i < a.size(); ++i) {
    INFO("element " << i << ": " << a[i] << " vs expected " << e[i]);
    CHECK(std::isnan(a[i]) == std::isnan(e[i]));
    CHECK(std::isinf(a[i]) == std::isinf(e[i]));
    if (std::isfinite(e[i])) CHECK(std::abs(a[i] - e[i]) <= 1e-5 + 1e-4 * std::abs(e[i]));
  }
}
}  // namespace

// ---- var ---------------------------------------------------------------------------------------------
TEST_CASE("CUDA var: every thread mapping, dims, keepdim, correction, float64, backward", "[cuda]") {
  check_op("var over dim 1 of 17 (a thread per row)", [](const auto& in) { return var(in[0], {1}); },
           {randn_leaf({33, 17}, 41)});
  check_op("var over dim 0, keepdim", [](const auto& in) { return var(in[0], {0}, 1, true); },
           {randn_leaf({50, 7}, 42)});
  check_op("var of all 561 (one block)", [](const auto& in) { return var(in[0]); }, {randn_leaf({33, 17}, 43)});
  check_op("var over rows of 129 (a warp per row)", [](const auto& in) { return var(in[0], {1}); },
           {randn_leaf({2000, 129}, 44)});
  check_op("var over rows of 10000 (4 chunks, second pass)", [](const auto& in) { return var(in[0], {1}); },
           {randn_leaf({3, 10000}, 45, 3.0)});
  check_op("var of 300000 offset values (146 chunks)", [](const auto& in) { return var(in[0] + 100.0); },
           {randn_leaf({300000}, 46)});
  check_op("var over dims 0 and 2, biased", [](const auto& in) { return var(in[0], {0, 2}, 0); },
           {randn_leaf({4, 9, 13}, 47)});
  check_op("var float64, dims -1", [](const auto& in) { return var(in[0], {-1}, 1, true); },
           {randn_leaf({6, 5000}, 48, 1.0, DType::Float64)});
  // K <= correction: 0 / 0 = NaN and x / 0 = inf, as the CPU (and PyTorch).
  Generator g(49);
  const Tensor x = randn({5, 2}, DType::Float32, g);
  expect_same_nonfinite("var over 2 elements, correction 2", var(x.to(gpu()), {1}, 2), var(x, {1}, 2));
  expect_same_nonfinite("var of 10 elements, correction 10", var(x.to(gpu()), {0, 1}, 10), var(x, {0, 1}, 10));
}

// ---- max / min over a dim, argmax ---------------------------------------------------------------------
TEST_CASE("CUDA max / min over a dim: values, indices (ties: first), backward", "[cuda]") {
  struct Case {
    const char* name;
    Shape shape;
    int64_t dim;
  };
  const std::vector<Case> cases = {
      {"dim 1 of [6, 77, 5] (a block per strided row)", {6, 77, 5}, 1},
      {"dim 0 of [6, 77, 5] (a thread per row of 6)", {6, 77, 5}, 0},
      {"dim -1 of [6, 77, 5]", {6, 77, 5}, -1},
      {"rows of 333 (a warp per row)", {2000, 333}, 1},
      {"rows of 10000 (4 chunks)", {3, 10000}, 1},
      {"dim 1 of [4, 1000, 40] (blocks over strided rows)", {4, 1000, 40}, 1},
      {"dim 1 of [4, 300, 2048] (a thread per column)", {4, 300, 2048}, 1},
  };
  uint64_t seed = 50;
  for (const Case& c : cases) {
    const Tensor x = tie_leaf(c.shape, ++seed);
    const int64_t dim = c.dim;
    for (bool keepdim : {false, true}) {
      const std::string k = keepdim ? ", keepdim" : "";
      check_op(std::string("max values, ") + c.name + k,
               [dim, keepdim](const auto& in) { return max(in[0], dim, keepdim).first; }, {x});
      check_op(std::string("min values, ") + c.name + k,
               [dim, keepdim](const auto& in) { return min(in[0], dim, keepdim).first; }, {x});
    }
    const Tensor xg = x.detach().to(gpu());
    expect_exact(std::string("max indices, ") + c.name, max(xg, dim).second, max(x.detach(), dim).second);
    expect_exact(std::string("min indices, ") + c.name, min(xg, dim).second, min(x.detach(), dim).second);
    expect_exact(std::string("argmax, ") + c.name, argmax(xg, dim), argmax(x.detach(), dim));
    expect_exact(std::string("argmin of a transposed view, ") + c.name, argmin(xg.transpose(0, 1), 0),
                 argmin(x.detach().transpose(0, 1), 0));
  }
  check_op("max float64 with ties (bit for bit, gradient to the first)",
           [](const auto& in) { return max(in[0], 1).first; }, {tie_leaf({40, 3000}, 60, DType::Float64)}, exact());
  const Tensor flat = tie_leaf({300000}, 61).detach();
  expect_exact("argmax of 300000 with ties (146 chunks)", argmax(flat.to(gpu())), argmax(flat));
  // NaN wins and the first NaN's index is reported.
  std::vector<double> v(3 * 500);
  for (size_t i = 0; i < v.size(); ++i) v[i] = double(int(i * 37 % 11) - 5);
  v[500 + 123] = v[500 + 321] = std::nan("");
  v[1000 + 499] = std::nan("");
  const Tensor xn = from_vector(v, {3, 500}, DType::Float32);
  expect_exact("max indices with NaNs", max(xn.to(gpu()), 1).second, max(xn, 1).second);
  expect_same_nonfinite("max values with NaNs", max(xn.to(gpu()), 1).first, max(xn, 1).first);
  // max over a dim of size 0 is refused (the op's check, before any kernel).
  CHECK(error_of([] { (void)max(zeros({3, 0}).to(gpu()), 1); }).find("cannot reduce over dim 1 of size 0") !=
        std::string::npos);
}

// ---- amax / amin, max(x) -------------------------------------------------------------------------------
TEST_CASE("CUDA amax / amin: dims, keepdim, the gradient split among ties", "[cuda]") {
  const Tensor t = tie_leaf({6, 77, 5}, 70);
  check_op("amax over dim 1", [](const auto& in) { return amax(in[0], {1}); }, {t});
  check_op("amin over dims 0 and 2, keepdim", [](const auto& in) { return amin(in[0], {0, 2}, true); }, {t});
  check_op("amax of all (one row of 2310)", [](const auto& in) { return amax(in[0]); }, {t});
  check_op("max(x) of 300000 (ties split 1 / count)", [](const auto& in) { return max(in[0]); },
           {tie_leaf({300000}, 71)});
  check_op("min(x) float64 (bit for bit)", [](const auto& in) { return min(in[0]); },
           {tie_leaf({7, 9000}, 72, DType::Float64)}, exact());
  check_op("amax float64 over rows of 333 (a warp per row, bit for bit)",
           [](const auto& in) { return amax(in[0], {1}); }, {tie_leaf({2000, 333}, 73, DType::Float64)}, exact());
  check_op("amax of plain random values", [](const auto& in) { return amax(in[0], {-1}); },
           {randn_leaf({30, 4097}, 74)});
  // A NaN row: the value is NaN, and the gradient goes to the NaNs only (split between them).
  std::vector<double> v(2 * 300, 1.0);
  v[17] = v[250] = std::nan("");
  const Tensor xn = from_vector(v, {2, 300}, DType::Float64);
  Tensor xg = xn.to(gpu()).set_requires_grad(), xc = xn.clone().set_requires_grad();
  Tensor ag = amax(xg, {1}), ac = amax(xc, {1});
  expect_same_nonfinite("amax with NaNs", ag, ac);
  sum(ag * 2.0).backward();
  sum(ac * 2.0).backward();
  expect_exact("amax backward with NaN ties", xg.grad(), xc.grad());
}

// ---- clip_grad_norm_ -------------------------------------------------------------------------------
TEST_CASE("CUDA clip_grad_norm_: the per-gradient norm on the GPU, every norm type", "[cuda]") {
  // The totals are doubles from float32 gradients, summed in another grouping than the CPU's (float
  // partial sums of 256): the float32 tolerance.
  const graft_test::Tol tol = graft_test::kTolF32;
  const std::vector<std::pair<Shape, DType>> shapes = {
      {{10}, DType::Float32}, {{33, 17}, DType::Float32}, {{300000}, DType::Float32}, {{70, 90}, DType::Float64}};
  for (double norm_type : {2.0, 1.0, 3.0, std::numeric_limits<double>::infinity()}) {
    Generator g(80);
    std::vector<Tensor> pc, pg;
    for (const auto& [s, dt] : shapes) {
      Tensor p = randn(s, dt, g), grad = randn(s, dt, g);
      pc.push_back(p.clone());
      pc.back().set_grad(grad.clone());
      pg.push_back(p.to(gpu()));
      pg.back().set_grad(grad.to(gpu()));
    }
    const double total_cpu = optim::clip_grad_norm_(pc, 1.0, norm_type);
    const double total_gpu = optim::clip_grad_norm_(pg, 1.0, norm_type);
    INFO("norm type " << norm_type << ": " << total_gpu << " vs " << total_cpu);
    CHECK(std::abs(total_gpu - total_cpu) <= tol.atol + tol.rtol * std::abs(total_cpu));
    for (size_t i = 0; i < pc.size(); ++i) expect_close("clipped gradient " + std::to_string(i), pg[i].grad(), pc[i].grad());
  }
  // A gradient holding inf: the total is not finite, and the error names the parameter and the value.
  Generator g(81);
  Tensor p = randn({5000}, DType::Float32, g).to(gpu());
  Tensor grad = randn({5000}, DType::Float32, g);
  {
    NoGradGuard ng;
    grad.slice(0, 4321, 4322).fill_(std::numeric_limits<double>::infinity());
  }
  p.set_grad(grad.to(gpu()));
  const std::string w = error_of([&] { (void)optim::clip_grad_norm_({randn({3}).to(gpu()), p}, 1.0); });
  INFO(w);
  CHECK(w.find("the gradient of parameter 1") != std::string::npos);
  CHECK(w.find("holds inf") != std::string::npos);
  CHECK(std::isnan(optim::clip_grad_norm_({p}, 1.0, 2.0, false)));
}

// ---- cat / stack ---------------------------------------------------------------------------------------
TEST_CASE("CUDA cat and stack: every dim, empty parts, many inputs, every unit width, any dtype", "[cuda]") {
  const Tensor a = randn_leaf({3, 4, 5}, 90), b = randn_leaf({3, 0, 5}, 91), c = randn_leaf({3, 7, 5}, 92);
  check_op("cat dim 1 with an empty part", [](const auto& in) { return cat({in[0], in[1], in[2]}, 1); }, {a, b, c});
  check_op("cat dim 0", [](const auto& in) { return cat({in[0], in[1]}, 0); }, {a, randn_leaf({2, 4, 5}, 93)});
  check_op("cat dim -1 (rows of 5 and 3 floats: 4-byte units)",
           [](const auto& in) { return cat({in[0], in[1]}, -1); }, {a, randn_leaf({3, 4, 3}, 94)});
  check_op("cat dim 1 of rows of 16 floats (16-byte units)",
           [](const auto& in) { return cat({in[0], in[1]}, 1); }, {randn_leaf({8, 16}, 95), randn_leaf({8, 32}, 96)});
  check_op("stack dim 1", [](const auto& in) { return stack({in[0], in[1], in[2]}, 1); },
           {randn_leaf({5, 6}, 97), randn_leaf({5, 6}, 98), randn_leaf({5, 6}, 99)});
  check_op("cat float64", [](const auto& in) { return cat({in[0], in[1]}, 1); },
           {randn_leaf({3, 2}, 100, 1.0, DType::Float64), randn_leaf({3, 5}, 101, 1.0, DType::Float64)}, exact());
  // 40 inputs: two launches of the 32-pointer table.
  Generator g(102);
  std::vector<Tensor> parts_cpu, parts_gpu;
  for (int i = 0; i < 40; ++i) {
    parts_cpu.push_back(randn({1 + i % 3, 7}, DType::Float32, g));
    parts_gpu.push_back(parts_cpu.back().to(gpu()));
  }
  expect_exact("cat of 40 inputs", cat(parts_gpu, 0), cat(parts_cpu, 0));
  // Parts whose data start 4 bytes into their storage (contiguous views at an offset, so cat reads
  // them in place): rows of 16 bytes, but the addresses allow 4-byte units only.
  const Tensor flat = randn({40}, DType::Float32, g);
  const auto at_offset = [](const Tensor& t, int64_t first) { return t.slice(0, first, first + 12).reshape({3, 4}); };
  const Tensor flat_gpu = flat.to(gpu());
  expect_exact("cat of parts at unaligned addresses",
               cat({at_offset(flat_gpu, 1), at_offset(flat_gpu, 21)}, 1), cat({at_offset(flat, 1), at_offset(flat, 21)}, 1));
  expect_exact("index_select of a tensor at an unaligned address",
               index_select(at_offset(flat_gpu, 3), 0, from_vector(std::vector<int64_t>{2, 0, 2}, {3}, DType::Int64).to(gpu())),
               index_select(at_offset(flat, 3), 0, from_vector(std::vector<int64_t>{2, 0, 2}, {3}, DType::Int64)));
  // Integers and bools move as bytes.
  const Tensor i1 = randint(-9, 9, {4, 3}, DType::Int64, g), i2 = randint(-9, 9, {4, 1}, DType::Int64, g);
  expect_exact("cat int64", cat({i1.to(gpu()), i2.to(gpu())}, 1), cat({i1, i2}, 1));
  const Tensor m1 = gt(randn({5, 3}, DType::Float32, g), 0.0), m2 = gt(randn({5, 2}, DType::Float32, g), 0.0);
  expect_exact("cat bool (1-byte units)", cat({m1.to(gpu()), m2.to(gpu())}, 1), cat({m1, m2}, 1));
}

// ---- index_select --------------------------------------------------------------------------------------
TEST_CASE("CUDA index_select: every dim, repeated indices (index_add backward), bad index", "[cuda]") {
  const Tensor x = randn_leaf({6, 9, 5}, 110);
  const Tensor idx = from_vector(std::vector<int64_t>{8, 0, 3, 3, 8, 1, 0, 7, 2, 3, 5}, {11}, DType::Int64);
  const Tensor idx0 = from_vector(std::vector<int64_t>{5, 5, 0, 2, 1}, {5}, DType::Int64);
  const Tensor idx2 = from_vector(std::vector<int64_t>{4, 0, 4, 4, 1, 2}, {6}, DType::Int64);
  const auto select = [](int64_t dim, const Tensor& index) {
    return [dim, index](const auto& in) { return index_select(in[0], dim, on_device_of(index, in[0])); };
  };
  check_op("index_select dim 1, repeats", select(1, idx), {x});
  check_op("index_select dim 0", select(0, idx0), {x});
  check_op("index_select dim -1 (rows of one float)", select(-1, idx2), {x});
  check_op("index_select rows of 256 floats (16-byte units)", select(1, idx), {randn_leaf({4, 10, 256}, 111)});
  check_op("index_select float64 (the backward bit for bit)", select(1, idx),
           {randn_leaf({6, 9, 5}, 112, 1.0, DType::Float64)}, exact());
  Generator g(115);
  check_op("index_select of a 1-D tensor, 2000 repeated indices (one index_add thread)",
           select(0, randint(0, 50, {2000}, DType::Int64, g)), {randn_leaf({50}, 113, 1.0, DType::Float64)}, exact());
  const Tensor xi = randint(-100, 100, {6, 9, 3}, DType::Int64, g);
  expect_exact("index_select int64 data", index_select(xi.to(gpu()), 1, idx.to(gpu())), index_select(xi, 1, idx));
  // Bad input, found by the index check on the GPU and named in the error.
  std::vector<int64_t> bad = {1, 2, 3, 9, 0};
  const std::string w = error_of([&] {
    (void)index_select(x.detach().to(gpu()), 1, from_vector(bad, {5}, DType::Int64).to(gpu()));
  });
  INFO(w);
  CHECK(w.find("index 9 at position [3] is out of range for dim 1 of size 9") != std::string::npos);
  const std::string wn = error_of([&] {
    (void)index_select(x.detach().to(gpu()), 0, from_vector(std::vector<int64_t>{0, -1}, {2}, DType::Int64).to(gpu()));
  });
  INFO(wn);
  CHECK(wn.find("index -1 at position [1]") != std::string::npos);
  const std::string wd = error_of([&] { (void)index_select(x.detach().to(gpu()), 1, idx); });
  INFO(wd);
  CHECK(wd.find("index is on cpu but the tensor it indexes is on cuda:0") != std::string::npos);
}

// ---- gather ---------------------------------------------------------------------------------------------
TEST_CASE("CUDA gather: every dim, smaller index shapes, scatter_add backward, bad index", "[cuda]") {
  const Tensor x = randn_leaf({4, 5, 6}, 120);
  Generator g(121);
  const std::vector<std::pair<int64_t, Shape>> cases = {{0, {7, 3, 6}}, {1, {2, 9, 4}}, {2, {4, 5, 11}}, {-1, {3, 1, 2}}};
  for (const auto& [dim, shape] : cases) {
    const int64_t d = dim < 0 ? dim + 3 : dim;
    const Tensor index = randint(0, x.size(int(d)), shape, DType::Int64, g);  // many repeats
    const std::string name = "gather dim " + std::to_string(dim) + " index " + shape.str();
    const auto fn = [dim = dim, index](const auto& in) { return gather(in[0], dim, on_device_of(index, in[0])); };
    check_op(name, fn, {x});
    check_op(name + " float64 (bit for bit)", fn, {x.detach().to(DType::Float64).set_requires_grad()}, exact());
  }
  const Tensor xi = randint(-100, 100, {4, 5, 6}, DType::Int64, g);
  const Tensor index = randint(0, 5, {4, 8, 6}, DType::Int64, g);
  expect_exact("gather int64 data", gather(xi.to(gpu()), 1, index.to(gpu())), gather(xi, 1, index));
  const Tensor flags = gt(randn({4, 5, 6}, DType::Float32, g), 0.0);
  expect_exact("gather bool data", gather(flags.to(gpu()), 1, index.to(gpu())), gather(flags, 1, index));
  // A gather along the class dim, as cross-entropy-like code does: [N, C] with [N, 1].
  const Tensor logits = randn_leaf({1000, 37}, 122);
  const Tensor targets = randint(0, 37, {1000, 1}, DType::Int64, g);
  check_op("gather [1000, 37] by [1000, 1]",
           [targets](const auto& in) { return gather(in[0], 1, on_device_of(targets, in[0])); }, {logits});
  std::vector<int64_t> bad(4 * 2 * 3, 1);
  bad[7] = 5;  // position [1, 0, 1]
  const std::string w = error_of([&] {
    (void)gather(x.detach().to(gpu()), 1, from_vector(bad, {4, 2, 3}, DType::Int64).to(gpu()));
  });
  INFO(w);
  CHECK(w.find("index 5 at position [1, 0, 1] is out of range for dim 1 of size 5") != std::string::npos);
}

// ---- pad --------------------------------------------------------------------------------------------------
TEST_CASE("CUDA constant pad: padding, cropping, several dims, any dtype, backward", "[cuda]") {
  const Tensor x = randn_leaf({2, 3, 4}, 130);
  const std::vector<std::vector<int64_t>> all_pads = {
      {1, 2}, {0, 0, 2, 1}, {-1, 2, 1, -2}, {3, -4}, {1, 1, 1, 1, 1, 1}, {-2, -2, 0, 0, -1, 0}};
  for (const auto& pads : all_pads) {
    std::string name = "pad {";
    for (int64_t p : pads) name += std::to_string(p) + " ";
    name += "}";
    check_op(name, [pads = pads](const auto& in) { return pad(in[0], pads, 7.5); }, {x});
    check_op(name + " float64", [pads = pads](const auto& in) { return pad(in[0], pads, -2.25); },
             {x.detach().to(DType::Float64).set_requires_grad()}, exact());
  }
  check_op("pad a [8, 3, 30, 30] image by 1 (ZeroPad2d)", [](const auto& in) { return pad(in[0], {1, 1, 1, 1}); },
           {randn_leaf({8, 3, 30, 30}, 131)});
  Generator g(132);
  const Tensor xi = randint(-100, 100, {3, 5}, DType::Int64, g);
  expect_exact("pad int64", pad(xi.to(gpu()), {2, 1, 0, 3}, -1.0), pad(xi, {2, 1, 0, 3}, -1.0));
  const Tensor flags = gt(randn({3, 5}, DType::Float32, g), 0.0);
  expect_exact("pad bool with true", pad(flags.to(gpu()), {1, 1}, 1.0), pad(flags, {1, 1}, 1.0));
  const Tensor h = randn({3, 5}, DType::Float32, g).to(DType::BFloat16);
  expect_exact("pad bfloat16 (the fill rounded as on the CPU)", pad(h.to(gpu()), {2, 2}, 0.1), pad(h, {2, 2}, 0.1));
}

// ---- index tensors compacted or converted on the GPU ------------------------------------------------
// index_select and gather take an int32 index (index_select) or a strided one and make it contiguous
// int64 on its device (index_as_int64, ops/index.hpp), and cat promotes int32 parts to int64: device
// copies of integer tensors, so these cases check the CUDA copy kernel on integer dtypes too.
TEST_CASE("CUDA index ops with int32 or non-contiguous index tensors, cat promoting int32", "[cuda]") {
  const Tensor x = randn_leaf({6, 9, 5}, 140);
  const Tensor idx = from_vector(std::vector<int64_t>{8, 0, 3, 3, 8, 1, 0, 7, 2, 3, 5}, {11}, DType::Int64);
  check_op("index_select, the index an input (non-contiguous on the GPU)",
           [](const auto& in) { return index_select(in[0], 1, in[1]); }, {x, idx});
  check_op("index_select, an int32 index", [](const auto& in) { return index_select(in[0], 1, in[1]); },
           {x, idx.to(DType::Int32)});
  Generator g(141);
  check_op("gather, the index an input (non-contiguous on the GPU)",
           [](const auto& in) { return gather(in[0], 2, in[1]); }, {x, randint(0, 5, {6, 4, 7}, DType::Int64, g)});
  const Tensor i1 = randint(-9, 9, {4, 3}, DType::Int32, g), i2 = randint(-9, 9, {4, 1}, DType::Int64, g);
  expect_exact("cat of int32 and int64 (promoted on the GPU)", cat({i1.to(gpu()), i2.to(gpu())}, 1), cat({i1, i2}, 1));
}
