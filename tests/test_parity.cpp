// PyTorch parity: every case of tests/data/ops_golden.bin (written by tools/gen_goldens.py with torch)
// runs the graft op on the stored float32 inputs, compares its outputs, then backpropagates the stored
// upstream gradients and compares the input gradients. Each case runs twice: on contiguous inputs and
// on strided copies (every input's last dim read with stride 2), which must give the same numbers.
// One tolerance, kTolF32 from harness.hpp, for every case; a failing case is a bug in the op.
//
// Coverage: every op in graft::op_registry() has at least one golden case, except the ones listed in
// kParityExemptions with the reason (dropout is random: its statistics are checked below instead).
#include <array>
#include <map>
#include <optional>
#include <set>

#include "golden.hpp"
#include "harness.hpp"

using namespace graft;
using namespace graft_test;

namespace {

// Ops without a golden case, each with the reason. Keep this list short and justified.
const std::map<std::string, std::string> kParityExemptions = {
    {"dropout", "random: checked by statistics in 'dropout matches its distribution' below"},
};

const GoldenFile& ops_golden() {
  static const GoldenFile file = read_golden(GRAFT_TEST_DATA_DIR "/ops_golden.bin");
  return file;
}

bool is_input_key(const std::string& k) {
  auto starts = [&](const char* p) { return k.rfind(p, 0) == 0; };
  return !(starts("attr_") || starts("out") || starts("gout") || starts("grad_"));
}

// The inputs and options of one case, as an op runner sees them.
struct OpInputs {
  const GoldenCase& c;
  std::map<std::string, Tensor> tensors;

  Tensor operator[](const std::string& key) const {
    auto it = tensors.find(key);
    GRAFT_CHECK(it != tensors.end(), "parity", "case '", c.name, "' has no input '", key, "'");
    return it->second;
  }
  Tensor optional(const std::string& key) const {  // undefined when absent (optional weight, bias, mask)
    auto it = tensors.find(key);
    return it == tensors.end() ? Tensor() : it->second;
  }
  bool has(const std::string& attr) const { return c.has("attr_" + attr); }
  int64_t i(const std::string& attr) const { return c.at("attr_" + attr).item<int64_t>(); }
  double f(const std::string& attr) const { return c.at("attr_" + attr).item<double>(); }
  bool b(const std::string& attr, bool otherwise = false) const {
    return has(attr) ? c.at("attr_" + attr).item<bool>() : otherwise;
  }
  std::vector<int64_t> ints(const std::string& attr) const {
    std::vector<int64_t> v;
    for (double d : c.at("attr_" + attr).to_vector()) v.push_back(int64_t(d));
    return v;
  }
  std::array<int64_t, 2> pair(const std::string& attr) const {
    const auto v = ints(attr);
    GRAFT_CHECK(v.size() == 2, "parity", "attr_", attr, " of case '", c.name, "' has ", v.size(), " values, expected 2");
    return {v[0], v[1]};
  }
  Shape shape(const std::string& attr) const { return Shape(ints(attr)); }
  std::vector<Tensor> numbered(const std::string& prefix) const {  // x0, x1, ... while present
    std::vector<Tensor> v;
    for (int k = 0; tensors.count(prefix + std::to_string(k)); ++k) v.push_back(tensors.at(prefix + std::to_string(k)));
    return v;
  }
};

using Outputs = std::vector<Tensor>;
using Runner = Outputs (*)(const OpInputs&);

Outputs one(Tensor t) { return {std::move(t)}; }

// op name (as registered) -> how to call it with a case's inputs and attrs.
const std::map<std::string, Runner>& runners() {
  static const std::map<std::string, Runner> r = {
      // ---- elementwise
      {"add", [](const OpInputs& in) { return one(in.has("scalar") ? add(in["a"], in.f("scalar")) : add(in["a"], in["b"])); }},
      {"sub", [](const OpInputs& in) { return one(in.has("scalar") ? sub(in["a"], in.f("scalar")) : sub(in["a"], in["b"])); }},
      {"mul", [](const OpInputs& in) { return one(in.has("scalar") ? mul(in["a"], in.f("scalar")) : mul(in["a"], in["b"])); }},
      {"div", [](const OpInputs& in) { return one(in.has("scalar") ? div(in["a"], in.f("scalar")) : div(in["a"], in["b"])); }},
      {"pow", [](const OpInputs& in) { return one(pow(in["a"], in["b"])); }},
      {"maximum", [](const OpInputs& in) { return one(maximum(in["a"], in["b"])); }},
      {"minimum", [](const OpInputs& in) { return one(minimum(in["a"], in["b"])); }},
      {"where", [](const OpInputs& in) { return one(where(in["cond"], in["a"], in["b"])); }},
      {"compare",
       [](const OpInputs& in) {
         // attr cmp: 0 eq, 1 ne, 2 lt, 3 le, 4 gt, 5 ge; against attr scalar when present
         const Tensor a = in["a"];
         const Tensor b = in.has("scalar") ? detail_ew::scalar_like(a, in.f("scalar")) : in["b"];
         static constexpr CompareOp ops[] = {CompareOp::Eq, CompareOp::Ne, CompareOp::Lt,
                                             CompareOp::Le, CompareOp::Gt, CompareOp::Ge};
         static constexpr const char* names[] = {"eq", "ne", "lt", "le", "gt", "ge"};
         const int64_t k = in.i("cmp");
         GRAFT_CHECK(k >= 0 && k < 6, "parity", "attr_cmp ", k, " out of range");
         return one(compare(a, b, ops[k], names[k]));
       }},
      {"neg", [](const OpInputs& in) { return one(neg(in["x"])); }},
      {"abs", [](const OpInputs& in) { return one(abs(in["x"])); }},
      {"exp", [](const OpInputs& in) { return one(exp(in["x"])); }},
      {"log", [](const OpInputs& in) { return one(log(in["x"])); }},
      {"sqrt", [](const OpInputs& in) { return one(sqrt(in["x"])); }},
      {"rsqrt", [](const OpInputs& in) { return one(rsqrt(in["x"])); }},
      {"tanh", [](const OpInputs& in) { return one(tanh(in["x"])); }},
      {"sigmoid", [](const OpInputs& in) { return one(sigmoid(in["x"])); }},
      {"relu", [](const OpInputs& in) { return one(relu(in["x"])); }},
      {"relu6", [](const OpInputs& in) { return one(relu6(in["x"])); }},
      {"gelu", [](const OpInputs& in) { return one(gelu(in["x"])); }},
      {"gelu_tanh", [](const OpInputs& in) { return one(gelu(in["x"], "tanh")); }},
      {"silu", [](const OpInputs& in) { return one(silu(in["x"])); }},
      {"hardswish", [](const OpInputs& in) { return one(hardswish(in["x"])); }},
      {"pow_scalar", [](const OpInputs& in) { return one(pow(in["x"], in.f("p"))); }},
      {"clamp", [](const OpInputs& in) { return one(clamp(in["x"], in.f("lo"), in.f("hi"))); }},
      // ---- copies, reductions, views
      {"clone", [](const OpInputs& in) { return one(in["x"].clone()); }},
      {"contiguous", [](const OpInputs& in) { return one(in["x"].transpose(0, 1).contiguous()); }},
      {"to_dtype", [](const OpInputs& in) { return one(in["x"].to(DType::Float64)); }},
      {"sum", [](const OpInputs& in) { return one(sum(in["x"], in.ints("dims"), in.b("keepdim"))); }},
      {"mean", [](const OpInputs& in) { return one(mean(in["x"], in.ints("dims"), in.b("keepdim"))); }},
      {"sum_to", [](const OpInputs& in) { return one(sum_to(in["x"], in.shape("shape"))); }},
      {"view", [](const OpInputs& in) { return one(in["x"].view(in.shape("shape"))); }},
      {"reshape", [](const OpInputs& in) { return one(in["x"].reshape(in.shape("shape"))); }},
      {"flatten", [](const OpInputs& in) { return one(in["x"].flatten(in.i("start"), in.i("end"))); }},
      {"permute", [](const OpInputs& in) { return one(in["x"].permute(in.ints("dims"))); }},
      {"transpose", [](const OpInputs& in) { return one(in["x"].transpose(in.i("d0"), in.i("d1"))); }},
      {"narrow", [](const OpInputs& in) { return one(in["x"].narrow(in.i("dim"), in.i("start"), in.i("length"))); }},
      {"slice",
       [](const OpInputs& in) { return one(in["x"].slice(in.i("dim"), in.i("start"), in.i("end"), in.i("step"))); }},
      {"select", [](const OpInputs& in) { return one(in["x"].select(in.i("dim"), in.i("index"))); }},
      {"expand", [](const OpInputs& in) { return one(in["x"].expand(in.shape("shape"))); }},
      {"squeeze", [](const OpInputs& in) { return one(in.has("dim") ? in["x"].squeeze(in.i("dim")) : in["x"].squeeze()); }},
      {"unsqueeze", [](const OpInputs& in) { return one(in["x"].unsqueeze(in.i("dim"))); }},
      // ---- min/max, var, softmax, normalization
      {"max",
       [](const OpInputs& in) {
         auto [values, indices] = max(in["x"], in.i("dim"), in.b("keepdim"));
         return Outputs{values, indices};
       }},
      {"min",
       [](const OpInputs& in) {
         auto [values, indices] = min(in["x"], in.i("dim"), in.b("keepdim"));
         return Outputs{values, indices};
       }},
      {"max_all", [](const OpInputs& in) { return one(max(in["x"])); }},
      {"min_all", [](const OpInputs& in) { return one(min(in["x"])); }},
      {"amax", [](const OpInputs& in) { return one(amax(in["x"], in.ints("dims"), in.b("keepdim"))); }},
      {"amin", [](const OpInputs& in) { return one(amin(in["x"], in.ints("dims"), in.b("keepdim"))); }},
      {"argmax",
       [](const OpInputs& in) { return one(in.has("dim") ? argmax(in["x"], in.i("dim"), in.b("keepdim")) : argmax(in["x"])); }},
      {"argmin",
       [](const OpInputs& in) { return one(in.has("dim") ? argmin(in["x"], in.i("dim"), in.b("keepdim")) : argmin(in["x"])); }},
      {"var",
       [](const OpInputs& in) { return one(var(in["x"], in.ints("dims"), in.i("correction"), in.b("keepdim"))); }},
      {"softmax", [](const OpInputs& in) { return one(softmax(in["x"], in.i("dim"))); }},
      {"log_softmax", [](const OpInputs& in) { return one(log_softmax(in["x"], in.i("dim"))); }},
      {"layer_norm",
       [](const OpInputs& in) {
         return one(layer_norm(in["x"], in.shape("normalized_shape"), in.optional("weight"), in.optional("bias"),
                               in.f("eps")));
       }},
      {"batch_norm",
       [](const OpInputs& in) {
         // outputs: y, then the running stats after their in-place update (when given)
         const Tensor running_mean = in.optional("running_mean"), running_var = in.optional("running_var");
         Tensor y = batch_norm(in["x"], running_mean, running_var, in.optional("weight"), in.optional("bias"),
                               in.b("training"), in.f("momentum"), in.f("eps"));
         return running_mean.defined() ? Outputs{y, running_mean, running_var} : Outputs{y};
       }},
      // ---- matmul, conv, pool
      {"matmul", [](const OpInputs& in) { return one(matmul(in["a"], in["b"])); }},
      {"linear", [](const OpInputs& in) { return one(linear(in["x"], in["weight"], in.optional("bias"))); }},
      {"conv2d",
       [](const OpInputs& in) {
         return one(conv2d(in["x"], in["weight"], in.optional("bias"), in.pair("stride"), in.pair("padding"),
                           in.pair("dilation"), in.i("groups")));
       }},
      {"max_pool2d",
       [](const OpInputs& in) {
         return one(max_pool2d(in["x"], in.pair("kernel"), in.pair("stride"), in.pair("padding"), in.pair("dilation"),
                               in.b("ceil_mode")));
       }},
      {"avg_pool2d",
       [](const OpInputs& in) {
         return one(avg_pool2d(in["x"], in.pair("kernel"), in.pair("stride"), in.pair("padding"), in.b("ceil_mode"),
                               in.b("count_include_pad")));
       }},
      {"adaptive_avg_pool2d", [](const OpInputs& in) { return one(adaptive_avg_pool2d(in["x"], in.pair("output_size"))); }},
      {"pad", [](const OpInputs& in) { return one(pad(in["x"], in.ints("pads"), in.f("value"))); }},
      // ---- indexing
      {"cat", [](const OpInputs& in) { return one(cat(in.numbered("x"), in.i("dim"))); }},
      {"stack", [](const OpInputs& in) { return one(stack(in.numbered("x"), in.i("dim"))); }},
      {"split",
       [](const OpInputs& in) {
         return in.has("sizes") ? split(in["x"], in.ints("sizes"), in.i("dim")) : split(in["x"], in.i("split_size"), in.i("dim"));
       }},
      {"index_select", [](const OpInputs& in) { return one(index_select(in["x"], in.i("dim"), in["index"])); }},
      {"gather", [](const OpInputs& in) { return one(gather(in["x"], in.i("dim"), in["index"])); }},
      {"embedding",
       [](const OpInputs& in) {
         const std::optional<int64_t> padding_idx = in.has("padding_idx") ? std::optional<int64_t>(in.i("padding_idx")) : std::nullopt;
         return one(embedding(in["indices"], in["weight"], padding_idx));
       }},
      // ---- losses (attr reduction: 0 None, 1 Mean, 2 Sum, graft::Reduction's order)
      {"cross_entropy",
       [](const OpInputs& in) {
         return one(cross_entropy(in["logits"], in["target"], Reduction(in.i("reduction")), in.i("ignore_index"),
                                  in.f("label_smoothing"), in.optional("weight")));
       }},
      {"binary_cross_entropy_with_logits",
       [](const OpInputs& in) {
         return one(binary_cross_entropy_with_logits(in["logits"], in["target"], Reduction(in.i("reduction")),
                                                     in.optional("pos_weight")));
       }},
      {"mse_loss", [](const OpInputs& in) { return one(mse_loss(in["input"], in["target"], Reduction(in.i("reduction")))); }},
      {"scaled_dot_product_attention",
       [](const OpInputs& in) {
         // two calls rather than one optional that may be empty: GCC 12 warns (maybe-uninitialized) on that
         const Tensor q = in["q"], k = in["k"], v = in["v"], mask = in.optional("attn_mask");
         const bool causal = in.b("is_causal");
         return one(in.has("scale") ? scaled_dot_product_attention(q, k, v, mask, 0.0, causal, in.f("scale"))
                                    : scaled_dot_product_attention(q, k, v, mask, 0.0, causal));
       }},
  };
  return r;
}

// A copy of t whose last dim has stride 2 (so it is not contiguous), with no autograd history.
Tensor strided_copy(const Tensor& t) {
  if (t.dim() == 0 || t.size(-1) < 2) return t.clone();
  Shape wide = t.shape();
  wide[wide.rank() - 1] *= 2;
  Tensor base = empty(wide, t.dtype());
  Tensor view = base.slice(-1, 0, wide[wide.rank() - 1], 2);
  view.copy_(t);
  REQUIRE(!view.is_contiguous());
  return view;
}

std::string out_key(const GoldenCase& c, size_t k) { return c.has("out") ? "out" : "out" + std::to_string(k); }
std::string gout_key(const GoldenCase& c, size_t k) { return c.has("out") ? "gout" : "gout" + std::to_string(k); }
size_t expected_output_count(const GoldenCase& c) {
  if (c.has("out")) return 1;
  size_t n = 0;
  while (c.has("out" + std::to_string(n))) ++n;
  return n;
}

void require_same(const Tensor& actual, const Tensor& expected, const std::string& what) {
  INFO(what);
  REQUIRE(actual.defined());
  INFO("dtype " << dtype_name(actual.dtype()) << ", expected " << dtype_name(expected.dtype()));
  REQUIRE(actual.dtype() == expected.dtype());
  // Float results: the one tolerance per dtype. Indices and bools: exact.
  const Tol tol = is_floating(expected.dtype()) ? tol_for(expected.dtype()) : Tol{0.0, 0.0};
  GRAFT_REQUIRE_CLOSE(actual, expected, tol);
}

void run_case(const GoldenCase& c, bool strided) {
  INFO("golden case '" << c.name << "' (op " << c.op << ") on " << (strided ? "strided" : "contiguous") << " inputs");
  auto it = runners().find(c.op);
  if (it == runners().end()) FAIL("no runner for op '" << c.op << "' in test_parity.cpp (is its header in graft.hpp?)");

  OpInputs in{c, {}};
  std::vector<std::string> wrt_keys;
  std::vector<Tensor> wrt;
  for (const auto& [key, t] : c.tensors) {
    if (!is_input_key(key)) continue;
    // Fresh copies each run: batch_norm updates its running stats in place. Those buffers stay
    // contiguous in the strided run: graft's batch_norm requires that (PyTorch does not) and says so.
    const bool buffer = key == "running_mean" || key == "running_var";
    Tensor x = strided && !buffer ? strided_copy(t) : t.clone();
    if (c.has("grad_" + key)) {
      x.set_requires_grad();
      wrt_keys.push_back(key);
      wrt.push_back(x);
    }
    in.tensors[key] = x;
  }

  Outputs outs;
  try {
    outs = it->second(in);
  } catch (const Error& e) {
    FAIL("the op threw: " << e.what());
  }
  const size_t n_out = expected_output_count(c);
  INFO("the op returned " << outs.size() << " outputs, the golden has " << n_out);
  REQUIRE(outs.size() == n_out);
  std::vector<Tensor> roots, gouts;
  for (size_t k = 0; k < n_out; ++k) {
    require_same(outs[k], c.at(out_key(c, k)), "output " + out_key(c, k));
    if (const Tensor* g = c.find(gout_key(c, k))) {
      roots.push_back(outs[k]);
      gouts.push_back(*g);
    }
  }
  if (wrt.empty()) return;
  REQUIRE(!roots.empty());
  std::vector<Tensor> grads;
  try {
    grads = autograd::grad(roots, wrt, gouts, false, false, /*allow_unused=*/true);
  } catch (const Error& e) {
    FAIL("backward threw: " << e.what());
  }
  for (size_t j = 0; j < wrt.size(); ++j) {
    const Tensor& expected = c.at("grad_" + wrt_keys[j]);
    const Tensor actual = grads[j].defined() ? grads[j] : zeros(expected.shape(), expected.dtype());
    require_same(actual, expected, "gradient of input '" + wrt_keys[j] + "'");
  }
}

}  // namespace

TEST_CASE("parity with PyTorch: every golden case, contiguous and strided inputs", "[parity]") {
  const GoldenFile& file = ops_golden();
  REQUIRE(file.cases.size() > 0);
  for (const GoldenCase& c : file.cases) {
    for (bool strided : {false, true}) {
      DYNAMIC_SECTION(c.name << (strided ? " [strided]" : "")) { run_case(c, strided); }
    }
  }
}

TEST_CASE("parity coverage: every registered op has a golden case", "[parity][coverage]") {
  std::set<std::string> covered;
  for (const GoldenCase& c : ops_golden().cases) covered.insert(c.op);
  for (const auto& [name, info] : op_registry()) {
    if (kParityExemptions.count(name)) continue;
    INFO("op '" << name << "' has no case in tests/data/ops_golden.bin: add one to tools/gen_goldens.py "
                "and regenerate (/usr/bin/python3 tools/gen_goldens.py)");
    CHECK(covered.count(name) == 1);
  }
  for (const auto& [name, why] : kParityExemptions) {
    INFO("exempt op '" << name << "' is not registered: drop it from kParityExemptions");
    CHECK(op_registry().count(name) == 1);
  }
  for (const std::string& op : covered) {
    INFO("golden cases for op '" << op << "', which graft does not register");
    CHECK(op_registry().count(op) == 1);
  }
}

// Dropout draws from graft's generator, not torch's, so it has no golden. Its contract instead:
// each element is zeroed with probability p, survivors are scaled by 1/(1-p), the gradient uses the
// same mask, eval mode and p = 0 are the identity, p = 1 gives zeros.
TEST_CASE("dropout matches its distribution (random op: statistics instead of a golden)", "[parity][dropout]") {
  const int64_t n = 200000;
  const double p = 0.3, scale = 1.0 / (1.0 - p);
  Generator g(42);
  Tensor x = rand_in({n}, 0.5, 1.5, 11, DType::Float32).set_requires_grad();
  Tensor y = dropout(x, p, true, g);
  sum(y).backward();
  // every element is either dropped (y = 0, dy/dx = 0) or kept (y = x / (1 - p), dy/dx = 1 / (1 - p))
  const auto xv = x.detach().to_vector(), yv = y.to_vector(), gv = x.grad().to_vector();
  auto close = [](double a, double e) { return std::abs(a - e) <= kTolF32.atol + kTolF32.rtol * std::abs(e); };
  int64_t dropped = 0, bad = -1;
  for (size_t i = 0; i < size_t(n); ++i) {
    const bool is_dropped = yv[i] == 0.0 && gv[i] == 0.0;
    const bool is_kept = close(yv[i], xv[i] * scale) && close(gv[i], scale);
    dropped += is_dropped;
    if (!is_dropped && !is_kept && bad < 0) bad = int64_t(i);
  }
  INFO("element " << bad << " is neither dropped nor kept and scaled");
  REQUIRE(bad == -1);
  // the dropped fraction is Binomial(n, p) / n: within 5 standard deviations
  const double frac = double(dropped) / double(n), sd = std::sqrt(p * (1 - p) / double(n));
  INFO("dropped fraction " << frac << ", expected " << p << " +- " << 5 * sd);
  REQUIRE(std::abs(frac - p) <= 5 * sd);

  Tensor z = rand_in({3, 4}, -1, 1, 7, DType::Float32);
  GRAFT_REQUIRE_CLOSE(dropout(z, p, false, g), z, kTolF32);
  GRAFT_REQUIRE_CLOSE(dropout(z, 0.0, true, g), z, kTolF32);
  GRAFT_REQUIRE_CLOSE(dropout(z, 1.0, true, g), zeros({3, 4}), kTolF32);
}
