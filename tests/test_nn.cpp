// tests/test_nn.cpp - nn::Module and the layers against PyTorch 1.13 (tests/data/nn_golden.bin, written
// by tools/gen_nn_goldens.py): each layer is built here with the case's constructor arguments, loads
// torch's state dict strictly, and must reproduce torch's output, input gradient, parameter gradients
// and updated buffers. Also: state_dict/named_parameters/named_modules names and order for a nested
// model, load_state_dict errors and reports, modes, to(DType), default initialization.
#include <functional>
#include <map>
#include <sstream>

#include "golden.hpp"
#include "harness.hpp"
#include "graft/nn.hpp"

namespace {

using namespace graft;
using graft_test::GoldenCase;
using graft_test::kTolF32;

const graft_test::GoldenFile& nn_golden_file() {
  static const graft_test::GoldenFile file = graft_test::read_golden(GRAFT_TEST_DATA_DIR "/nn_golden.bin");
  return file;
}
const GoldenCase& nn_golden_case(const std::string& name) {
  for (const auto& c : nn_golden_file().cases)
    if (c.name == name) return c;
  throw Error("test_nn: no golden case '" + name + "'");
}
std::vector<std::string> nn_split_lines(const std::string& s) {
  std::vector<std::string> out;
  std::stringstream ss(s);
  std::string line;
  while (std::getline(ss, line)) out.push_back(line);
  if (!s.empty() && s.back() == '\n') out.push_back("");
  return out;
}
// The case's keys that start with prefix, prefix removed, in file order.
nn::StateDict nn_prefixed(const GoldenCase& c, const std::string& prefix) {
  nn::StateDict out;
  for (const auto& [k, t] : c.tensors)
    if (k.rfind(prefix, 0) == 0) out.emplace_back(k.substr(prefix.size()), t);
  return out;
}

// ---- the nested model of the generator: a ResNet-like stem, two blocks and a head ----------------
class NnTestBlock : public nn::Module {
 public:
  NnTestBlock(int64_t cin, int64_t cout, int64_t stride) : Module("Block") {
    nn::Conv2dOptions o3;
    o3.stride = {stride, stride};
    o3.padding = {1, 1};
    o3.bias = false;
    conv1 = register_module("conv1", std::make_shared<nn::Conv2d>(cin, cout, 3, o3));
    bn1 = register_module("bn1", std::make_shared<nn::BatchNorm2d>(cout));
    relu = register_module("relu", std::make_shared<nn::ReLU>());
    nn::Conv2dOptions o2;
    o2.padding = {1, 1};
    o2.bias = false;
    conv2 = register_module("conv2", std::make_shared<nn::Conv2d>(cout, cout, 3, o2));
    bn2 = register_module("bn2", std::make_shared<nn::BatchNorm2d>(cout));
    if (stride != 1 || cin != cout) {
      nn::Conv2dOptions o1;
      o1.stride = {stride, stride};
      o1.bias = false;
      downsample = register_module(
          "downsample", std::make_shared<nn::Sequential>(std::initializer_list<nn::ModulePtr>{
                            std::make_shared<nn::Conv2d>(cin, cout, 1, o1), std::make_shared<nn::BatchNorm2d>(cout)}));
    }
  }
  Tensor forward(const Tensor& x) override {
    const Tensor idt = downsample ? downsample->forward(x) : x;
    const Tensor y = relu->forward(bn1->forward(conv1->forward(x)));
    return relu->forward(add(bn2->forward(conv2->forward(y)), idt));
  }
  std::shared_ptr<nn::Conv2d> conv1, conv2;
  std::shared_ptr<nn::BatchNorm2d> bn1, bn2;
  std::shared_ptr<nn::ReLU> relu;
  std::shared_ptr<nn::Sequential> downsample;
};

class NnTestNested : public nn::Module {
 public:
  NnTestNested() : Module("Nested") {
    nn::Conv2dOptions o;
    o.padding = {1, 1};
    o.bias = false;
    stem = register_module("stem", std::make_shared<nn::Sequential>(std::initializer_list<nn::ModulePtr>{
                                       std::make_shared<nn::Conv2d>(3, 4, 3, o), std::make_shared<nn::BatchNorm2d>(4),
                                       std::make_shared<nn::ReLU>()}));
    layer1 = register_module("layer1", std::make_shared<nn::Sequential>(std::initializer_list<nn::ModulePtr>{
                                           std::make_shared<NnTestBlock>(4, 4, 1), std::make_shared<NnTestBlock>(4, 6, 2)}));
    pool = register_module("pool", std::make_shared<nn::AdaptiveAvgPool2d>(std::array<int64_t, 2>{1, 1}));
    fc = register_module("fc", std::make_shared<nn::Linear>(6, 3));
  }
  Tensor forward(const Tensor& x) override {
    return fc->forward(pool->forward(layer1->forward(stem->forward(x))).flatten(1));
  }
  std::shared_ptr<nn::Sequential> stem, layer1;
  std::shared_ptr<nn::AdaptiveAvgPool2d> pool;
  std::shared_ptr<nn::Linear> fc;
};

// timm's layout: pos_embed on the model itself, patch_embed.proj a child.
class NnTestPatchEmbedPos : public nn::Module {
 public:
  NnTestPatchEmbedPos() : Module("PatchEmbedPos") {
    pos_embed = nn::register_position_embedding(*this, 4, 6);
    patch_embed = register_module("patch_embed", std::make_shared<nn::PatchEmbed>(8, 4, 3, 6));
  }
  Tensor forward(const Tensor& x) override { return add(patch_embed->forward(x), pos_embed); }
  Tensor pos_embed;
  std::shared_ptr<nn::PatchEmbed> patch_embed;
};

// ---- one layer case ----------------------------------------------------------------------------
struct NnLayerUnderTest {
  nn::ModulePtr module;
  // Runs the forward from the case's inputs (float inputs already require grad).
  std::function<Tensor(const std::map<std::string, Tensor>&)> call;
};

NnLayerUnderTest nn_build_layer(const std::string& name) {
  using P = std::shared_ptr<nn::Module>;
  auto single = [](P m) {
    return NnLayerUnderTest{m, [m](const std::map<std::string, Tensor>& in) { return m->forward(in.at("x")); }};
  };
  if (name == "linear") return single(std::make_shared<nn::Linear>(5, 4));
  if (name == "linear_nobias") return single(std::make_shared<nn::Linear>(5, 4, false));
  if (name == "conv2d") {
    nn::Conv2dOptions o;
    o.stride = {2, 1};
    o.padding = {1, 1};
    o.dilation = {1, 2};
    o.groups = 2;
    return single(std::make_shared<nn::Conv2d>(4, 6, std::array<int64_t, 2>{3, 2}, o));
  }
  if (name == "conv2d_nobias") {
    nn::Conv2dOptions o;
    o.bias = false;
    return single(std::make_shared<nn::Conv2d>(3, 5, 3, o));
  }
  if (name == "batchnorm2d_train") return single(std::make_shared<nn::BatchNorm2d>(3));
  if (name == "batchnorm2d_train_cumulative") {
    nn::BatchNormOptions o;
    o.momentum = std::nullopt;
    return single(std::make_shared<nn::BatchNorm2d>(3, o));
  }
  if (name == "batchnorm2d_eval") {
    nn::BatchNormOptions o;
    o.eps = 1e-3;
    auto m = std::make_shared<nn::BatchNorm2d>(3, o);
    m->eval();
    return single(m);
  }
  if (name == "batchnorm2d_noaffine_notrack" || name == "batchnorm2d_notrack_eval") {
    nn::BatchNormOptions o;
    o.affine = false;
    o.track_running_stats = false;
    auto m = std::make_shared<nn::BatchNorm2d>(3, o);
    if (name == "batchnorm2d_notrack_eval") m->eval();
    return single(m);
  }
  if (name == "layernorm") return single(std::make_shared<nn::LayerNorm>(6));
  if (name == "layernorm_2d") return single(std::make_shared<nn::LayerNorm>(Shape{3, 4}, 1e-6));
  if (name == "embedding") return single(std::make_shared<nn::Embedding>(7, 4, 2));
  if (name == "maxpool2d")
    return single(std::make_shared<nn::MaxPool2d>(std::array<int64_t, 2>{3, 3}, std::array<int64_t, 2>{2, 2},
                                                  std::array<int64_t, 2>{1, 1}));
  if (name == "avgpool2d")
    return single(std::make_shared<nn::AvgPool2d>(std::array<int64_t, 2>{2, 2}, std::array<int64_t, 2>{2, 2},
                                                  std::array<int64_t, 2>{1, 1}, false, false));
  if (name == "adaptiveavgpool2d") return single(std::make_shared<nn::AdaptiveAvgPool2d>(std::array<int64_t, 2>{2, 3}));
  if (name == "sequential_activations") {
    auto s = std::make_shared<nn::Sequential>();
    s->push_back(std::make_shared<nn::Linear>(6, 8));
    s->push_back(std::make_shared<nn::GELU>("tanh"));
    s->push_back(std::make_shared<nn::Linear>(8, 8));
    s->push_back(std::make_shared<nn::SiLU>());
    s->push_back(std::make_shared<nn::Linear>(8, 8));
    s->push_back(std::make_shared<nn::Hardswish>());
    s->push_back(std::make_shared<nn::Linear>(8, 8));
    s->push_back(std::make_shared<nn::ReLU6>());
    s->push_back(std::make_shared<nn::Linear>(8, 5));
    s->push_back(std::make_shared<nn::GELU>());
    s->push_back(std::make_shared<nn::Identity>());
    s->push_back(std::make_shared<nn::ReLU>());
    return single(s);
  }
  if (name == "flatten")
    return single(std::make_shared<nn::Sequential>(std::initializer_list<nn::ModulePtr>{
        std::make_shared<nn::Conv2d>(2, 3, 2), std::make_shared<nn::Flatten>(), std::make_shared<nn::Linear>(27, 4)}));
  if (name == "mha_kpm") {
    auto m = std::make_shared<nn::MultiheadAttention>(8, 2, 0.0, true, /*batch_first=*/true);
    return {m, [m](const std::map<std::string, Tensor>& in) {
              const Tensor& x = in.at("x");
              return m->attention(x, x, x, in.at("key_padding_mask"));
            }};
  }
  if (name == "mha_seqfirst_attn_mask") {
    auto m = std::make_shared<nn::MultiheadAttention>(8, 4);
    return {m, [m](const std::map<std::string, Tensor>& in) {
              return m->attention(in.at("x"), in.at("kv"), in.at("kv"), Tensor(), in.at("attn_mask"));
            }};
  }
  if (name == "mha_float_attn_mask_nobias") {
    auto m = std::make_shared<nn::MultiheadAttention>(6, 3, 0.0, /*bias=*/false);
    return {m, [m](const std::map<std::string, Tensor>& in) {
              const Tensor& x = in.at("x");
              return m->attention(x, x, x, in.at("key_padding_mask"), in.at("attn_mask"));
            }};
  }
  if (name == "mha_float_kpm") {
    auto m = std::make_shared<nn::MultiheadAttention>(6, 2);
    return {m, [m](const std::map<std::string, Tensor>& in) {
              const Tensor& x = in.at("x");
              return m->attention(x, x, x, in.at("key_padding_mask"));
            }};
  }
  if (name == "mha_unbatched") return single(std::make_shared<nn::MultiheadAttention>(4, 2, 0.0, true, true));
  if (name == "transformer_postnorm_relu" || name == "transformer_prenorm_gelu") {
    nn::TransformerOptions o;
    o.dim_feedforward = 16;
    o.dropout = 0.0;
    o.batch_first = true;
    if (name == "transformer_prenorm_gelu") {
      o.activation = "gelu";
      o.norm_first = true;
    }
    auto m = std::make_shared<nn::TransformerEncoderLayer>(8, 2, o);
    return {m, [m](const std::map<std::string, Tensor>& in) {
              return m->encode(in.at("x"), Tensor(), in.at("key_padding_mask"));
            }};
  }
  if (name == "patch_embed_pos") return single(std::make_shared<NnTestPatchEmbedPos>());
  throw Error("test_nn: no layer for case '" + name + "'");
}

void nn_check_layer_case(const GoldenCase& c) {
  INFO("case " << c.name);
  NnLayerUnderTest lut = nn_build_layer(c.name);
  nn::Module& m = *lut.module;
  const nn::StateDict sd = nn_prefixed(c, "sd.");
  // Names and order of the state dict equal torch's.
  const nn::StateDict own = m.state_dict();
  REQUIRE(own.size() == sd.size());
  for (size_t i = 0; i < sd.size(); ++i) REQUIRE(own[i].first == sd[i].first);
  const nn::LoadReport report = m.load_state_dict(sd, /*strict=*/true);
  REQUIRE(report.ok());

  std::map<std::string, Tensor> in;
  for (const auto& [k, t] : c.tensors) {
    if (k.rfind("sd.", 0) == 0 || k.rfind("grad", 0) == 0 || k.rfind("after.", 0) == 0 || k == "out" || k == "gout")
      continue;
    Tensor v = t.clone();
    if (c.has("grad_" + k)) v.set_requires_grad(true);
    in[k] = v;
  }
  const Tensor out = lut.call(in);
  GRAFT_REQUIRE_CLOSE(out, c.at("out"), kTolF32);
  sum(mul(out, c.at("gout"))).backward();
  for (const auto& [k, v] : in)
    if (c.has("grad_" + k)) {
      INFO("grad_" << k);
      GRAFT_REQUIRE_CLOSE(v.grad(), c.at("grad_" + k), kTolF32);
    }
  for (const auto& [k, p] : m.named_parameters()) {
    INFO("grad." << k);
    REQUIRE(p.grad().defined());
    GRAFT_REQUIRE_CLOSE(p.grad(), c.at("grad." + k), kTolF32);
  }
  for (const auto& [k, b] : m.named_buffers()) {
    INFO("after." << k);
    GRAFT_REQUIRE_CLOSE(b.to(DType::Float64), c.at("after." + k).to(DType::Float64), kTolF32);
  }
}

}  // namespace

TEST_CASE("nn layers match PyTorch: outputs, input and parameter gradients, buffers", "[nn][golden]") {
  int checked = 0;
  for (const auto& c : nn_golden_file().cases) {
    if (c.op != "nn" || c.name == "nested_model") continue;
    SECTION(c.name) { nn_check_layer_case(c); }
    ++checked;
  }
  REQUIRE(checked >= 20);
}

TEST_CASE("nn nested model: names and order equal torch's, eval output matches", "[nn][golden]") {
  NnTestNested model;
  std::vector<std::string> sd_names, param_names, module_names;
  for (const auto& [k, t] : model.state_dict()) sd_names.push_back(k);
  for (const auto& [k, t] : model.named_parameters()) param_names.push_back(k);
  for (const auto& [k, m] : model.named_modules()) module_names.push_back(k);
  REQUIRE(sd_names == nn_split_lines(nn_golden_case("names_state_dict").op));
  REQUIRE(param_names == nn_split_lines(nn_golden_case("names_parameters").op));
  REQUIRE(module_names == nn_split_lines(nn_golden_case("names_modules").op));
  CHECK(sd_names[0] == "stem.0.weight");
  CHECK(std::find(sd_names.begin(), sd_names.end(), "layer1.1.downsample.1.num_batches_tracked") != sd_names.end());

  const GoldenCase& c = nn_golden_case("nested_model");
  model.load_state_dict(nn_prefixed(c, "sd."));
  model.eval();
  REQUIRE_FALSE(model.layer1->child("0")->child("bn1")->is_training());
  GRAFT_REQUIRE_CLOSE(model.forward(c.at("x")), c.at("out"), kTolF32);
  model.train();
  REQUIRE(model.layer1->child("1")->child("downsample")->child("1")->is_training());
}

TEST_CASE("nn load_state_dict: strict errors name each key and shape, non-strict report", "[nn]") {
  auto make = [] {
    return std::make_shared<nn::Sequential>(std::initializer_list<nn::ModulePtr>{
        std::make_shared<nn::Linear>(3, 4), std::make_shared<nn::ReLU>(), std::make_shared<nn::Linear>(4, 2)});
  };
  auto net = make();
  nn::StateDict sd = make()->state_dict();  // different random values
  // Missing 2.bias, unexpected "extra.weight", shape mismatch for 0.weight.
  nn::StateDict bad;
  for (auto& [k, t] : sd) {
    if (k == "2.bias") continue;
    if (k == "0.weight") {
      bad.emplace_back(k, randn({4, 5}));
      continue;
    }
    bad.emplace_back(k, t);
  }
  bad.emplace_back("extra.weight", randn({1}));
  const std::vector<double> before = net->state_dict()[2].second.to_vector();  // 2.weight
  graft_test::require_error([&] { net->load_state_dict(bad); },
                            {"load_state_dict", "Sequential", "missing keys: '2.bias'", "unexpected keys: 'extra.weight'",
                             "size mismatch for '0.weight'", "expected shape [4, 3]", "got [4, 5]"});
  REQUIRE(net->state_dict()[2].second.to_vector() == before);  // strict copies nothing on error

  const nn::LoadReport r = net->load_state_dict(bad, /*strict=*/false);
  REQUIRE(r.missing == std::vector<std::string>{"2.bias"});
  REQUIRE(r.unexpected == std::vector<std::string>{"extra.weight"});
  REQUIRE(r.mismatched.size() == 1);
  CHECK(r.mismatched[0].name == "0.weight");
  CHECK(r.mismatched[0].expected == Shape({4, 3}));
  CHECK(r.mismatched[0].actual == Shape({4, 5}));
  // The rest was copied; parameters keep their handles and requires_grad.
  const auto sd_after = net->state_dict();
  CHECK(sd_after[1].second.to_vector() == sd[1].second.to_vector());  // 0.bias
  CHECK(sd_after[2].second.to_vector() == sd[2].second.to_vector());  // 2.weight
  CHECK(sd_after[2].second.is_same(std::static_pointer_cast<nn::Linear>((*net)[2])->weight));
  CHECK(sd_after[2].second.requires_grad());

  // dtype converted on load (a float64 checkpoint into float32 parameters), std::map accepted.
  std::map<std::string, Tensor> as_map;
  for (auto& [k, t] : sd) as_map[k] = t.to(DType::Float64);
  REQUIRE(net->load_state_dict(as_map).ok());
  CHECK(net->state_dict()[0].second.dtype() == DType::Float32);
  GRAFT_REQUIRE_CLOSE(net->state_dict()[0].second, sd[0].second, kTolF32);
}

TEST_CASE("nn Module: registration, counts, apply, to(DType), freezing", "[nn]") {
  auto net = std::make_shared<nn::Sequential>();
  net->push_back(std::make_shared<nn::Conv2d>(3, 4, 3));
  net->push_back(std::make_shared<nn::BatchNorm2d>(4));
  net->push_back(std::make_shared<nn::Flatten>());
  REQUIRE(net->size() == 3);
  REQUIRE((*net)[1]->type_name() == "BatchNorm2d");
  graft_test::require_error([&] { (*net)[3]; }, {"Sequential", "index 3", "3 modules"});
  graft_test::require_error([&] { net->register_buffer("0", zeros({1})); }, {"name '0' is already registered"});
  graft_test::require_error([&] { net->register_parameter("a.b", zeros({1})); }, {"bad name 'a.b'"});
  REQUIRE(net->num_parameters() == 4 * 3 * 9 + 4 + 4 + 4);
  (*net)[0]->requires_grad_(false);
  REQUIRE(net->num_parameters(/*trainable_only=*/true) == 8);
  REQUIRE(net->named_buffers().size() == 3);

  std::vector<std::string> visited;
  net->apply([&](const std::string& name, nn::Module& m) { visited.push_back(name + ":" + m.type_name()); });
  REQUIRE(visited == std::vector<std::string>{":Sequential", "0:Conv2d", "1:BatchNorm2d", "2:Flatten"});

  auto conv = std::static_pointer_cast<nn::Conv2d>((*net)[0]);
  const Tensor w = conv->weight;
  net->to(DType::Float64);
  CHECK(w.dtype() == DType::Float64);  // the layer's handle sees the conversion
  CHECK(conv->weight.dtype() == DType::Float64);
  CHECK(std::static_pointer_cast<nn::BatchNorm2d>((*net)[1])->num_batches_tracked.dtype() == DType::Int64);
  const Tensor y = net->forward(randn({2, 3, 5, 5}, DType::Float64));
  CHECK(y.dtype() == DType::Float64);
  CHECK(y.shape() == Shape({2, 4 * 3 * 3}));

  graft_test::require_error([] { nn::ModuleList().forward(zeros({1})); }, {"ModuleList", "forward"});
}

TEST_CASE("nn Module: shared parameters appear once in named_parameters, twice in state_dict", "[nn]") {
  auto net = std::make_shared<nn::Sequential>();
  auto a = std::make_shared<nn::Linear>(3, 3);
  net->push_back(a);
  net->push_back(a);  // the same module twice: named_modules and named_parameters list it once
  REQUIRE(net->named_parameters().size() == 2);
  REQUIRE(net->named_modules().size() == 2);
  REQUIRE(net->state_dict().size() == 4);
  REQUIRE(net->state_dict()[2].first == "1.weight");
  auto tied = std::make_shared<nn::Sequential>();
  auto emb = std::make_shared<nn::Embedding>(5, 3);
  auto head = std::make_shared<nn::Linear>(3, 5, false);
  tied->push_back(emb);
  tied->push_back(head);
  tied->register_parameter("scale", ones({1}));
  REQUIRE(tied->named_parameters()[0].first == "scale");  // own parameters come first
  graft_test::require_error([&] { tied->register_module("self", std::shared_ptr<nn::Module>()); },
                            {"register_module('self')", "null module"});
}

TEST_CASE("nn MultiheadAttention and PatchEmbed reject bad shapes naming them", "[nn]") {
  nn::MultiheadAttention mha(8, 2, 0.0, true, /*batch_first=*/true);
  const Tensor x = randn({2, 5, 8});
  graft_test::require_error([&] { mha.attention(x, x, x, zeros({2, 4}, DType::Bool)); },
                            {"MultiheadAttention", "key_padding_mask", "[2, 5]", "[2, 4]"});
  graft_test::require_error([&] { mha.attention(x, x, x, Tensor(), zeros({5, 4}, DType::Bool)); },
                            {"MultiheadAttention", "attn_mask", "[5, 5]", "[5, 4]"});
  graft_test::require_error([&] { mha.forward(randn({2, 5, 6})); }, {"MultiheadAttention", "embedding dim 8"});
  graft_test::require_error([] { nn::MultiheadAttention(6, 4); }, {"embed_dim 6", "num_heads 4"});
  nn::PatchEmbed pe(8, 4, 3, 6);
  REQUIRE(pe.num_patches == 4);
  REQUIRE(pe.forward(randn({1, 3, 8, 8})).shape() == Shape({1, 4, 6}));
  graft_test::require_error([&] { pe.forward(randn({1, 3, 9, 8})); }, {"PatchEmbed", "[B, C, 8, 8]", "[1, 3, 9, 8]"});
}

TEST_CASE("nn default initialization follows torch's bounds", "[nn]") {
  manual_seed(3);
  nn::Linear lin(50, 40);
  const double bound = 1.0 / std::sqrt(50.0);  // kaiming_uniform_(a = sqrt 5) gives 1 / sqrt(fan_in) too
  double wmax = 0, bmax = 0;
  for (double v : lin.weight.to_vector()) wmax = std::max(wmax, std::abs(v));
  for (double v : lin.bias.to_vector()) bmax = std::max(bmax, std::abs(v));
  CHECK(wmax <= bound);
  CHECK(wmax > 0.9 * bound);
  CHECK(bmax <= bound);
  nn::Embedding emb(5, 3, -1);
  REQUIRE(emb.padding_idx.value() == 4);
  for (double v : emb.weight.select(0, 4).to_vector()) CHECK(v == 0.0);
  nn::MultiheadAttention mha(8, 2);
  for (double v : mha.in_proj_bias.to_vector()) CHECK(v == 0.0);
  for (double v : mha.out_proj->bias.to_vector()) CHECK(v == 0.0);
  nn::PositionEmbedding pe(4, 6);
  REQUIRE(pe.state_dict()[0].first == "pos_embed");
  REQUIRE(pe.pos_embed.shape() == Shape({1, 4, 6}));
  REQUIRE(pe.forward(zeros({2, 4, 6})).shape() == Shape({2, 4, 6}));
  graft_test::require_error([&] { pe.forward(zeros({2, 5, 6})); }, {"PositionEmbedding", "[B, 4, 6]", "[2, 5, 6]"});
}

TEST_CASE("nn Dropout and train/eval modes", "[nn]") {
  manual_seed(1);
  nn::Dropout d(0.5);
  const Tensor x = ones({1000});
  REQUIRE(d.is_training());
  const auto y = d.forward(x).to_vector();
  int zeros_n = 0;
  for (double v : y) zeros_n += v == 0.0;
  CHECK(zeros_n > 400);
  CHECK(zeros_n < 600);
  d.eval();
  REQUIRE(d.forward(x).to_vector() == x.to_vector());
}

TEST_CASE("nn modules train with SGD on parameters(), frozen layers stay put", "[nn]") {
  manual_seed(7);
  auto net = std::make_shared<nn::Sequential>(std::initializer_list<nn::ModulePtr>{
      std::make_shared<nn::Linear>(4, 16), std::make_shared<nn::GELU>(), std::make_shared<nn::LayerNorm>(16),
      std::make_shared<nn::Linear>(16, 3)});
  (*net)[2]->requires_grad_(false);  // a frozen layer: no grads, no updates
  const std::vector<double> frozen_before = std::static_pointer_cast<nn::LayerNorm>((*net)[2])->weight.to_vector();
  const Tensor x = randn({32, 4});
  const Tensor target = randint(0, 3, {32});
  optim::SGD opt(net->parameters(), 0.1, 0.9);
  double first = 0, last = 0;
  for (int step = 0; step < 30; ++step) {
    opt.zero_grad();
    const Tensor loss = cross_entropy(net->forward(x), target);
    loss.backward();
    opt.step();
    (step == 0 ? first : last) = loss.item();
  }
  CHECK(last < 0.5 * first);
  const auto& ln = std::static_pointer_cast<nn::LayerNorm>((*net)[2]);
  CHECK_FALSE(ln->weight.grad().defined());
  CHECK(ln->weight.to_vector() == frozen_before);
}
