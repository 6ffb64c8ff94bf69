// Gradient checkpointing (graft/autograd/checkpoint.hpp) and the models' set_grad_checkpointing:
// the gradients of inputs and parameters with and without it are the same (bit-equal in float64,
// within the float32 tolerance in float32), also with dropout and drop path in training mode (the
// generator state is replayed); finite differences through a checkpoint; the plain-call cases, errors,
// retain_graph, create_graph, nesting; and the CPU peak memory it saves on a small ViT step.
#include <catch2/catch.hpp>

#include <map>
#include <string>
#include <vector>

#include "graft/models/bert.hpp"
#include "graft/models/vit.hpp"
#include "harness.hpp"

using namespace graft;
using graft_test::close_report;
using graft_test::max_abs_diff;
using graft_test::require_error;

namespace {

// A residual MLP block with dropout and drop path, so the recompute must replay the generator.
class CkptMlpBlock : public nn::Module {
 public:
  explicit CkptMlpBlock(int64_t dim) : Module("CkptMlpBlock") {
    fc1 = register_module("fc1", std::make_shared<nn::Linear>(dim, 2 * dim));
    drop = register_module("drop", std::make_shared<nn::Dropout>(0.3));
    fc2 = register_module("fc2", std::make_shared<nn::Linear>(2 * dim, dim));
    drop_path = register_module("drop_path", std::make_shared<nn::StochasticDepth>(0.4, "row"));
  }
  Tensor forward(const Tensor& x) override {
    return add(x, drop_path->forward(fc2->forward(drop->forward(gelu(fc1->forward(x))))));
  }
  std::shared_ptr<nn::Linear> fc1, fc2;
  std::shared_ptr<nn::Dropout> drop;
  std::shared_ptr<nn::StochasticDepth> drop_path;
};

std::shared_ptr<nn::Sequential> ckpt_mlp(DType dt, uint64_t seed) {
  manual_seed(seed);
  auto m = std::make_shared<nn::Sequential>();
  for (int i = 0; i < 3; ++i) m->push_back(std::make_shared<CkptMlpBlock>(8));
  m->to(dt);
  m->train();
  return m;
}

// Every parameter's gradient (cloned, by name); an undefined one stays undefined.
std::map<std::string, Tensor> ckpt_param_grads(nn::Module& m) {
  std::map<std::string, Tensor> g;
  for (auto& [name, p] : m.named_parameters()) g[name] = p.grad().defined() ? p.grad().clone() : Tensor();
  return g;
}

// Bit-equal (float64) or within tol (float32) for every gradient; all must be defined.
void ckpt_require_same_grads(const std::map<std::string, Tensor>& got, const std::map<std::string, Tensor>& want,
                             bool exact) {
  REQUIRE(got.size() == want.size());
  for (const auto& [name, w] : want) {
    INFO("parameter " << name);
    REQUIRE(w.defined());
    REQUIRE(got.at(name).defined());
    if (exact) {
      INFO("max |diff| " << max_abs_diff(got.at(name), w));
      CHECK(graft_test::same_bits(got.at(name), w));
    } else {
      const std::string r = close_report(got.at(name), w, graft_test::kTolF32);
      INFO(r);
      CHECK(r.empty());
    }
  }
}

// One training step of the MLP (seeded), plain or with each block checkpointed. Returns the input's
// gradient; the parameters' gradients are left in the model.
Tensor ckpt_mlp_step(nn::Sequential& m, const Tensor& x0, bool checkpointed, uint64_t seed) {
  m.zero_grad();
  const Tensor x = x0.detach().set_requires_grad(true);
  manual_seed(seed);
  Tensor h = x;
  for (size_t i = 0; i < m.size(); ++i) {
    const nn::ModulePtr block = m[i];
    h = checkpointed ? checkpoint([block](const Tensor& in) { return block->forward(in); }, h) : block->forward(h);
  }
  Generator wg(99);
  const Tensor w = randn(h.shape(), h.dtype(), wg);
  sum(mul(h, w)).backward();
  return x.grad().clone();
}

}  // namespace

TEST_CASE("checkpoint: an MLP with dropout and drop path gets the same gradients", "[checkpoint]") {
  for (DType dt : {DType::Float64, DType::Float32}) {
    INFO("dtype " << dtype_name(dt));
    const bool exact = dt == DType::Float64;
    auto m = ckpt_mlp(dt, 11);
    Generator g(5);
    const Tensor x = randn({6, 8}, dt, g);

    const Tensor dx_plain = ckpt_mlp_step(*m, x, false, 21);
    const auto grads_plain = ckpt_param_grads(*m);
    const uint64_t rng_after_plain = default_generator().next_u64();

    const Tensor dx_ckpt = ckpt_mlp_step(*m, x, true, 21);
    const auto grads_ckpt = ckpt_param_grads(*m);
    // The recompute replays the stream and puts it back: the rest of the run draws the same numbers.
    CHECK(default_generator().next_u64() == rng_after_plain);

    if (exact) {
      CHECK(graft_test::same_bits(dx_ckpt, dx_plain));
    } else {
      const std::string r = close_report(dx_ckpt, dx_plain, graft_test::kTolF32);
      INFO(r);
      CHECK(r.empty());
    }
    ckpt_require_same_grads(grads_ckpt, grads_plain, exact);

    // Without preserve_rng_state the recompute draws new masks: the gradients differ, which is
    // what shows the replay is doing the work above.
    m->zero_grad();
    const Tensor xr = x.detach().set_requires_grad(true);
    manual_seed(21);
    Tensor h = xr;
    for (size_t i = 0; i < m->size(); ++i) {
      const nn::ModulePtr block = (*m)[i];
      h = checkpoint([block](const std::vector<Tensor>& in) { return std::vector<Tensor>{block->forward(in[0])}; },
                     {h}, /*preserve_rng_state=*/false)[0];
    }
    Generator wg(99);
    sum(mul(h, randn(h.shape(), h.dtype(), wg))).backward();
    CHECK(max_abs_diff(xr.grad(), dx_plain) > 1e-3);
  }
}

TEST_CASE("checkpoint: under bfloat16 autocast, backward inside the scope", "[checkpoint]") {
  auto m = ckpt_mlp(DType::Float32, 15);
  m->eval();  // no dropout: this case is about the weight-cast cache
  Generator g(16);
  const Tensor x = randn({4, 8}, DType::Float32, g);
  const Tensor w0 = std::static_pointer_cast<CkptMlpBlock>((*m)[0])->fc1->weight;
  // warm: a cast of block 0's fc1 weight made before the checkpoint, so the cache holds it with history.
  auto step = [&](bool ckpt, bool warm) {
    m->zero_grad();
    AutocastGuard amp(DType::BFloat16);
    const Tensor pre = warm ? sum(linear(x, w0)) : Tensor();
    const Tensor xi = x.detach().set_requires_grad(true);
    Tensor h = xi;
    for (size_t i = 0; i < m->size(); ++i) {
      const nn::ModulePtr block = (*m)[i];
      h = ckpt ? checkpoint([block](const Tensor& in) { return block->forward(in); }, h) : block->forward(h);
    }
    (warm ? add(sum(h), pre) : sum(h)).backward();  // the recompute runs here, under the forward's autocast
    return xi.grad().clone();
  };
  {
    // Each weight cast once, inside its block: the same ops, the same bits.
    const Tensor dx_plain = step(false, false);
    const auto grads_plain = ckpt_param_grads(*m);
    const Tensor dx_ckpt = step(true, false);
    CHECK(graft_test::same_bits(dx_ckpt, dx_plain));
    ckpt_require_same_grads(ckpt_param_grads(*m), grads_plain, /*exact=*/true);
  }
  {
    // With the cast shared across the checkpoint's boundary, the plain run sums w0's two uses in
    // bfloat16 (one cached cast) and the checkpointed one in float32 (each pass casts afresh): equal
    // to bfloat16 rounding.
    step(false, true);
    const auto grads_plain = ckpt_param_grads(*m);
    step(true, true);
    const auto grads_ckpt = ckpt_param_grads(*m);
    for (const auto& [name, want] : grads_plain) {
      const std::string r = close_report(grads_ckpt.at(name), want, graft_test::kTolBF16);
      INFO(name << ": " << r);
      CHECK(r.empty());
    }
  }
}

TEST_CASE("checkpoint: finite differences in float64, inputs and a parameter fn captures", "[checkpoint]") {
  Generator g(3);
  const Tensor x = graft_test::rand_in({3, 4}, -1.0, 1.0, 7);
  const Tensor b = graft_test::rand_in({3, 5}, -1.0, 1.0, 8);
  const Tensor w = graft_test::rand_in({4, 5}, -1.0, 1.0, 9);
  // in = {x, b, w}: x and b go through the checkpoint as inputs, w only through fn's closure, so its
  // gradient reaches it through the checkpoint's extra edge. Two outputs.
  graft_test::gradcheck(
      [](const std::vector<Tensor>& in) {
        const Tensor wc = in[2];
        return checkpoint(
            [wc](const std::vector<Tensor>& xs) {
              const Tensor h = tanh(add(matmul(xs[0], wc), xs[1]));  // [3, 5]
              return std::vector<Tensor>{mul(h, xs[1]), sum(mul(xs[0], xs[0]), {1})};
            },
            {in[0], in[1]});
      },
      {x, b, w});
}

TEST_CASE("checkpoint: autograd::grad reaches inputs and captured parameters alike", "[checkpoint]") {
  Generator g(4);
  const Tensor x = randn({4, 3}, DType::Float64, g).set_requires_grad(true);
  const Tensor w = randn({3, 3}, DType::Float64, g).set_requires_grad(true);
  auto f = [w](const Tensor& in) { return sigmoid(matmul(in, w)); };
  const Tensor y_plain = sum(pow(f(x), 2.0));
  const auto want = autograd::grad({y_plain}, {x, w});
  const Tensor y_ckpt = sum(pow(checkpoint(f, x), 2.0));
  const auto got = autograd::grad({y_ckpt}, {x, w});
  CHECK(graft_test::same_bits(got[0], want[0]));
  CHECK(graft_test::same_bits(got[1], want[1]));
  CHECK(!x.grad().defined());  // grad() leaves .grad alone, through the checkpoint too
  CHECK(!w.grad().defined());
}

TEST_CASE("checkpoint: a plain call under NoGradGuard or when nothing requires grad", "[checkpoint]") {
  int calls = 0;
  Generator g(6);
  const Tensor w = randn({3, 3}, DType::Float64, g).set_requires_grad(true);
  auto fn = [&calls, w](const Tensor& in) {
    ++calls;
    return matmul(in, w);
  };
  const Tensor x = randn({2, 3}, DType::Float64, g).set_requires_grad(true);
  {
    NoGradGuard no_grad;
    const Tensor y = checkpoint(fn, x);
    CHECK(calls == 1);
    CHECK(!y.requires_grad());
    CHECK(y.grad_fn() == nullptr);
    CHECK(graft_test::same_bits(y, matmul(x, w)));
  }
  {
    // nothing fn uses requires grad: fn's own result, no node
    const Tensor xf = x.detach();
    calls = 0;
    const Tensor y = checkpoint([&calls](const Tensor& in) { ++calls; return mul(in, 2.0); }, xf);
    CHECK(calls == 1);
    CHECK(!y.requires_grad());
  }
  {
    // with grad: one call in the forward, one more in the backward
    calls = 0;
    const Tensor y = checkpoint(fn, x);
    CHECK(calls == 1);
    REQUIRE(y.grad_fn() != nullptr);
    CHECK(y.grad_fn()->name() == "CheckpointBackward");
    sum(y).backward();
    CHECK(calls == 2);
    CHECK(graft_test::same_bits(w.grad(), matmul(x.detach().transpose(0, 1), ones({2, 3}, DType::Float64))));
  }
}

TEST_CASE("checkpoint: outputs that do not depend on the inputs", "[checkpoint]") {
  Generator g(8);
  const Tensor x = randn({2, 3}, DType::Float64, g).set_requires_grad(true);
  const Tensor w = randn({2, 3}, DType::Float64, g).set_requires_grad(true);
  const Tensor c = randn({2, 3}, DType::Float64, g);  // needs no grad
  const auto outs = checkpoint(
      [w, c](const std::vector<Tensor>& in) {
        return std::vector<Tensor>{mul(in[0], c), mul(w, 3.0), add(c, 1.0)};
      },
      {x});
  REQUIRE(outs.size() == 3);
  CHECK(outs[0].requires_grad());
  CHECK(outs[1].requires_grad());   // from the parameter alone
  CHECK(!outs[2].requires_grad());  // from nothing that requires grad: no history, as in torch
  CHECK(graft_test::same_bits(outs[2], add(c, 1.0)));

  // Only the parameter-only output in the loss: w gets 3, x zeros (the outputs share one node, so
  // x is reached; torch, whose outputs keep their own nodes, returns none there).
  const auto gw = autograd::grad({sum(outs[1])}, {x, w}, {}, /*retain_graph=*/true, false, /*allow_unused=*/true);
  REQUIRE(gw[0].defined());
  CHECK(max_abs_diff(gw[0], zeros({2, 3}, DType::Float64)) == 0.0);
  CHECK(graft_test::same_bits(gw[1], full({2, 3}, 3.0, DType::Float64)));
  // Both: backward fills x.grad = c and w.grad = 3.
  sum(add(outs[0], outs[1])).backward();
  CHECK(graft_test::same_bits(x.grad(), c));
  CHECK(graft_test::same_bits(w.grad(), full({2, 3}, 3.0, DType::Float64)));

  // fn returning its input unchanged: the gradient passes through.
  const Tensor z = randn({3}, DType::Float64, g).set_requires_grad(true);
  const Tensor same = checkpoint([](const Tensor& in) { return in; }, z);
  sum(mul(same, 2.0)).backward();
  CHECK(graft_test::same_bits(z.grad(), full({3}, 2.0, DType::Float64)));
}

TEST_CASE("checkpoint: bad input is refused by name", "[checkpoint]") {
  const Tensor x = ones({2}).set_requires_grad(true);
  require_error([] { checkpoint([](const std::vector<Tensor>& in) { return in; }, {}); }, {"checkpoint", "no inputs"});
  require_error([&] { checkpoint([](const std::vector<Tensor>&) { return std::vector<Tensor>{}; }, {x}); },
                {"checkpoint", "fn returned no tensors"});
  require_error([&] { checkpoint([](const std::vector<Tensor>& in) { return std::vector<Tensor>{in[0], Tensor()}; }, {x}); },
                {"checkpoint", "undefined tensor as output 1"});
  require_error([&] { checkpoint([](const std::vector<Tensor>& in) { return in; }, {x, Tensor()}); },
                {"checkpoint", "input 1 is undefined"});
  require_error([&] { checkpoint(CheckpointFn(), {x}); }, {"checkpoint", "fn is empty"});
  {
    NoGradGuard no_grad;  // the plain call checks fn's result too
    require_error([&] { checkpoint([](const std::vector<Tensor>&) { return std::vector<Tensor>{}; }, {x}); },
                  {"checkpoint", "fn returned no tensors"});
  }
}

TEST_CASE("checkpoint: retain_graph, a second backward, and an input changed in place", "[checkpoint]") {
  Generator g(9);
  const Tensor w = randn({3, 3}, DType::Float64, g).set_requires_grad(true);
  const Tensor x = randn({2, 3}, DType::Float64, g).set_requires_grad(true);
  auto fn = [w](const Tensor& in) { return dropout(tanh(matmul(in, w)), 0.5, true); };
  manual_seed(1);
  sum(fn(x)).backward();
  const Tensor gw1 = w.grad().clone(), gx1 = x.grad().clone();
  w.zero_grad();
  x.zero_grad();

  manual_seed(1);
  const Tensor loss = sum(checkpoint(fn, x));
  loss.backward({}, /*retain_graph=*/true);
  CHECK(graft_test::same_bits(w.grad(), gw1));
  loss.backward();  // recomputes again, with the same mask
  CHECK(graft_test::same_bits(w.grad(), mul(gw1, 2.0)));
  CHECK(graft_test::same_bits(x.grad(), mul(gx1, 2.0)));
  require_error([&] { loss.backward(); }, {"CheckpointBackward", "second time"});

  Tensor x2 = randn({2, 3}, DType::Float64, g);
  const Tensor loss2 = sum(checkpoint(fn, x2));
  x2.mul_(2.0);  // the recompute would see other values
  require_error([&] { loss2.backward(); }, {"CheckpointBackward", "modified by an in-place op"});
}

TEST_CASE("checkpoint: nested checkpoints and create_graph", "[checkpoint]") {
  Generator g(10);
  const Tensor w1 = randn({4, 4}, DType::Float64, g).set_requires_grad(true);
  const Tensor w2 = randn({4, 4}, DType::Float64, g).set_requires_grad(true);
  const Tensor x0 = randn({3, 4}, DType::Float64, g);
  auto inner = [w2](const Tensor& h) { return dropout(sigmoid(matmul(h, w2)), 0.25, true); };
  auto outer_plain = [w1, inner](const Tensor& h) { return inner(tanh(matmul(h, w1))); };
  auto outer_nested = [w1, inner](const Tensor& h) { return checkpoint(inner, tanh(matmul(h, w1))); };

  auto step = [&](const std::function<Tensor(const Tensor&)>& f) {
    w1.zero_grad();
    w2.zero_grad();
    const Tensor x = x0.detach().set_requires_grad(true);
    manual_seed(4);
    sum(pow(f(x), 2.0)).backward();
    return std::vector<Tensor>{x.grad().clone(), w1.grad().clone(), w2.grad().clone()};
  };
  const auto want = step(outer_plain);
  const auto got = step([&](const Tensor& x) { return checkpoint(outer_nested, x); });
  for (size_t i = 0; i < want.size(); ++i) {
    INFO("gradient " << i);
    CHECK(graft_test::same_bits(got[i], want[i]));
  }

  // Double backward through the recompute: d/dw1 of |d loss / d x|^2.
  auto second_order = [&](bool ckpt) {
    w1.zero_grad();
    w2.zero_grad();
    const Tensor x = x0.detach().set_requires_grad(true);
    auto f = [w1](const Tensor& h) { return mul(matmul(h, w1), h); };  // ops with a second derivative
    const Tensor fx = ckpt ? checkpoint(f, x) : f(x);
    const Tensor y = sum(mul(mul(fx, fx), fx));
    const Tensor gx = autograd::grad({y}, {x}, {}, true, /*create_graph=*/true)[0];
    sum(mul(gx, gx)).backward();
    return w1.grad().clone();
  };
  const Tensor h_plain = second_order(false);
  const Tensor h_ckpt = second_order(true);
  const std::string r = close_report(h_ckpt, h_plain, graft_test::kTolF64);
  INFO(r);
  CHECK(r.empty());
}

TEST_CASE("checkpoint: ViT set_grad_checkpointing gives the same gradients", "[checkpoint]") {
  for (DType dt : {DType::Float64, DType::Float32}) {
    INFO("dtype " << dtype_name(dt));
    manual_seed(2);
    models::ViTConfig c;
    c.img_size = 32;
    c.patch_size = 8;
    c.num_classes = 5;
    c.embed_dim = 32;
    c.depth = 3;
    c.num_heads = 4;
    auto vit = std::make_shared<models::VisionTransformer>(c);
    vit->to(dt);
    vit->train();
    Generator g(12);
    const Tensor x = randn({2, 3, 32, 32}, dt, g);
    const Tensor y = randint(0, 5, {2}, DType::Int64, g);
    auto step = [&](bool ckpt) {
      vit->set_grad_checkpointing(ckpt);
      vit->zero_grad();
      const Tensor xi = x.detach().set_requires_grad(true);
      const Tensor logits = vit->forward(xi);
      cross_entropy(logits, y).backward();
      return std::make_pair(logits.detach().clone(), xi.grad().clone());
    };
    const auto [logits_plain, dx_plain] = step(false);
    const auto grads_plain = ckpt_param_grads(*vit);
    const auto [logits_ckpt, dx_ckpt] = step(true);
    const auto grads_ckpt = ckpt_param_grads(*vit);
    CHECK(vit->grad_checkpointing());
    CHECK(graft_test::same_bits(logits_ckpt, logits_plain));
    ckpt_require_same_grads(grads_ckpt, grads_plain, dt == DType::Float64);
    const std::string r = close_report(dx_ckpt, dx_plain, dt == DType::Float64 ? graft_test::kTolF64 : graft_test::kTolF32);
    INFO(r);
    CHECK(r.empty());
    if (dt == DType::Float64) CHECK(graft_test::same_bits(dx_ckpt, dx_plain));
  }
}

TEST_CASE("checkpoint: BERT set_grad_checkpointing with dropout gives the same gradients", "[checkpoint]") {
  for (DType dt : {DType::Float64, DType::Float32}) {
    INFO("dtype " << dtype_name(dt));
    models::BertConfig c;
    c.vocab_size = 50;
    c.hidden_size = 16;
    c.num_hidden_layers = 3;
    c.num_attention_heads = 4;
    c.intermediate_size = 32;
    c.max_position_embeddings = 20;
    c.hidden_dropout_prob = 0.2;
    c.attention_probs_dropout_prob = 0.3;
    c.num_classes = 3;
    manual_seed(3);
    auto bert = std::make_shared<models::BertModel>(c);
    bert->to(dt);
    bert->train();
    Generator g(13);
    const Tensor ids = randint(0, 50, {2, 7}, DType::Int64, g);
    const Tensor mask = from_vector(std::vector<int64_t>{1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0}, {2, 7});
    const Tensor labels = randint(0, 3, {2}, DType::Int64, g);
    auto step = [&](bool ckpt) {
      bert->set_grad_checkpointing(ckpt);
      bert->zero_grad();
      manual_seed(77);
      const Tensor logits = bert->logits(ids, mask);
      cross_entropy(logits, labels).backward();
      return logits.detach().clone();
    };
    const Tensor logits_plain = step(false);
    const auto grads_plain = ckpt_param_grads(*bert);
    const Tensor logits_ckpt = step(true);
    const auto grads_ckpt = ckpt_param_grads(*bert);
    CHECK(graft_test::same_bits(logits_ckpt, logits_plain));
    // The position and type embeddings of unused rows get zero gradients; all are defined.
    ckpt_require_same_grads(grads_ckpt, grads_plain, dt == DType::Float64);

    // The masks really are random: another seed changes the gradients.
    bert->zero_grad();
    manual_seed(78);
    cross_entropy(bert->logits(ids, mask), labels).backward();
    const std::string key = "encoder.layer.0.intermediate.dense.weight";
    CHECK(max_abs_diff(ckpt_param_grads(*bert).at(key), grads_plain.at(key)) > 1e-6);
  }
}

TEST_CASE("checkpoint: the CPU memory statistics and a ViT step's peak", "[checkpoint]") {
  {
    const size_t before = cpu_memory_stats().allocated_bytes;
    cpu_reset_peak_memory_stats();
    {
      const Tensor t = empty({1000}, DType::Float64);  // 8000 bytes, rounded up to a block
      CHECK(cpu_memory_stats().allocated_bytes >= before + 8000);
    }
    CHECK(cpu_memory_stats().allocated_bytes == before);
    CHECK(cpu_memory_stats().peak_allocated_bytes >= before + 8000);
    cpu_reset_peak_memory_stats();
    CHECK(cpu_memory_stats().peak_allocated_bytes == before);
  }
  manual_seed(5);
  models::ViTConfig c;
  c.img_size = 64;
  c.patch_size = 8;  // 64 tokens + the class token
  c.num_classes = 10;
  c.embed_dim = 64;
  c.depth = 6;
  c.num_heads = 4;
  auto vit = std::make_shared<models::VisionTransformer>(c);
  vit->train();
  Generator g(14);
  const Tensor x = randn({4, 3, 64, 64}, DType::Float32, g);
  const Tensor y = randint(0, 10, {4}, DType::Int64, g);
  auto peak_of_step = [&](bool ckpt) {
    vit->set_grad_checkpointing(ckpt);
    vit->zero_grad();
    const size_t base = cpu_memory_stats().allocated_bytes;
    cpu_reset_peak_memory_stats();
    cross_entropy(vit->forward(x), y).backward();
    return cpu_memory_stats().peak_allocated_bytes - base;
  };
  peak_of_step(false);  // warm up: nothing lazily made on the first step counts below
  const size_t plain = peak_of_step(false);
  const size_t ckpt = peak_of_step(true);
  INFO("peak above the model: plain " << plain << " bytes, checkpointed " << ckpt << " bytes");
  CHECK(ckpt < plain);
  // Six blocks: what stays is the blocks' inputs, one block's activations and the gradients, under
  // half of every block's activations (3.5 MB against 9.0 MB when written).
  CHECK(2 * ckpt < plain);
}
