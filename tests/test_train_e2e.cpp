// End-to-end training against PyTorch (tests/data/train_golden.bin, written by tools/gen_goldens.py):
// an MLP and a CNN start from the weights torch used, train 5 SGD steps (momentum 0.9, weight decay)
// on the stored batches, and must match torch's loss at every step, the gradients of the first step,
// and the final weights (and the CNN's batch-norm running statistics), all within kTolF32.
// Before them: graft::optim::SGD against hand-computed torch.optim.SGD updates, and its errors.
#include <map>

#include "golden.hpp"
#include "harness.hpp"

using namespace graft;
using namespace graft_test;

TEST_CASE("SGD matches torch.optim.SGD on a hand-computed sequence", "[optim]") {
  // p = [1, -2], constant gradient g = 2p (loss = sum p^2). torch, lr 0.1, momentum 0.5, dampening 0.1,
  // weight_decay 0.2, two steps:
  //   step 1: d = 2p + 0.2p = 2.2p;  buf = d;                   p -= 0.1 * buf
  //   step 2: d = 2.2p';             buf = 0.5 buf + 0.9 d;     p -= 0.1 * buf
  Tensor p = from_vector(std::vector<double>{1.0, -2.0}, {2}).set_requires_grad();
  optim::SGD opt({p}, 0.1, 0.5, 0.1, 0.2);
  std::vector<double> ref = {1.0, -2.0}, buf(2);
  for (int step = 0; step < 2; ++step) {
    opt.zero_grad();
    sum(p * p).backward();
    opt.step();
    for (size_t i = 0; i < 2; ++i) {
      const double d = 2.2 * ref[i];
      buf[i] = step == 0 ? d : 0.5 * buf[i] + 0.9 * d;
      ref[i] -= 0.1 * buf[i];
    }
  }
  GRAFT_REQUIRE_CLOSE(p.detach(), from_vector(ref, {2}), kTolF64);

  // Nesterov: p -= lr * (d + momentum * buf)
  Tensor q = from_vector(std::vector<double>{0.5, 3.0}, {2}).set_requires_grad();
  optim::SGD nesterov({q}, 0.05, 0.9, 0.0, 0.0, true);
  std::vector<double> qr = {0.5, 3.0}, qb(2);
  for (int step = 0; step < 3; ++step) {
    nesterov.zero_grad();
    sum(q * q).backward();
    nesterov.step();
    for (size_t i = 0; i < 2; ++i) {
      const double d = 2.0 * qr[i];
      qb[i] = step == 0 ? d : 0.9 * qb[i] + d;
      qr[i] -= 0.05 * (d + 0.9 * qb[i]);
    }
  }
  GRAFT_REQUIRE_CLOSE(q.detach(), from_vector(qr, {2}), kTolF64);
}

TEST_CASE("SGD rejects bad hyperparameters naming the value", "[optim][errors]") {
  Tensor p = zeros({2}, DType::Float64).set_requires_grad();
  require_error([&] { optim::SGD({p}, -0.1); }, {"SGD", "learning rate", "-0.1"});
  require_error([&] { optim::SGD({p}, 0.1, -0.5); }, {"SGD", "momentum", "-0.5"});
  require_error([&] { optim::SGD({p}, 0.1, 0.0, 0.0, -1.0); }, {"SGD", "weight_decay", "-1"});
  require_error([&] { optim::SGD({p}, 0.1, 0.0, 0.0, 0.0, true); }, {"SGD", "nesterov", "momentum 0"});
  require_error([&] { optim::SGD(std::vector<Tensor>{}, 0.1); }, {"SGD", "empty parameter list"});
  require_error([&] { optim::SGD({p * 2.0}, 0.1); }, {"SGD", "not a leaf"});
}

TEST_CASE("SGD skips parameters without a gradient and zero_grad clears them", "[optim]") {
  Tensor a = from_vector(std::vector<double>{1.0}, {1}).set_requires_grad();
  Tensor b = from_vector(std::vector<double>{5.0}, {1}).set_requires_grad();
  optim::SGD opt({a, b}, 0.5, 0.9);
  sum(a * 3.0).backward();  // b gets no gradient
  opt.step();
  REQUIRE(a.item() == Approx(1.0 - 0.5 * 3.0));
  REQUIRE(b.item() == 5.0);
  REQUIRE(!opt.momentum_buffer(1).defined());
  opt.zero_grad();
  REQUIRE(!a.grad().defined());
  sum(a * 3.0).backward();
  opt.zero_grad(/*set_to_none=*/false);
  REQUIRE(a.grad().defined());
  REQUIRE(a.grad().item() == 0.0);
}


namespace {

const GoldenFile& train_golden() {
  static const GoldenFile file = read_golden(GRAFT_TEST_DATA_DIR "/train_golden.bin");
  return file;
}

const GoldenCase& model_case(const std::string& name) {
  for (const GoldenCase& c : train_golden().cases)
    if (c.name == name) return c;
  throw Error("train golden: no case '" + name + "'");
}

// A model's state: trainable parameters (in the order torch's optimizer saw them) and buffers.
struct ModelState {
  std::vector<std::string> names;
  std::map<std::string, Tensor> params, buffers;
};

ModelState load_state(const GoldenCase& c, const std::vector<std::string>& param_names,
                      const std::vector<std::string>& buffer_names) {
  ModelState s;
  s.names = param_names;
  for (const auto& n : param_names) s.params[n] = c.at("init_" + n).clone().set_requires_grad();
  for (const auto& n : buffer_names) s.buffers[n] = c.at("init_" + n).clone();
  return s;
}

using Forward = std::function<Tensor(ModelState&, const Tensor& x)>;

// Trains with torch's recipe and checks every recorded quantity.
void train_and_compare(const GoldenCase& c, ModelState& s, const Forward& forward) {
  std::vector<Tensor> params;
  for (const auto& n : s.names) params.push_back(s.params.at(n));
  optim::SGD opt(params, c.at("attr_lr").item(), c.at("attr_momentum").item(), 0.0, c.at("attr_weight_decay").item());
  const Tensor& losses = c.at("loss");
  const auto expected_loss = losses.to_vector();
  for (int64_t step = 0; step < losses.numel(); ++step) {
    INFO("model " << c.name << ", step " << step);
    opt.zero_grad();
    Tensor loss = cross_entropy(forward(s, c.at("x" + std::to_string(step))), c.at("y" + std::to_string(step)));
    loss.backward();
    GRAFT_REQUIRE_CLOSE(loss.detach().reshape({1}), full({1}, expected_loss[size_t(step)]), kTolF32);
    if (step == 0) {
      for (const auto& n : s.names) {
        INFO("gradient of " << n << " at step 0");
        GRAFT_REQUIRE_CLOSE(s.params.at(n).grad(), c.at("grad_step0_" + n), kTolF32);
      }
    }
    opt.step();
  }
  for (const auto& n : s.names) {
    INFO("final " << n);
    GRAFT_REQUIRE_CLOSE(s.params.at(n).detach(), c.at("final_" + n), kTolF32);
  }
  for (const auto& [n, b] : s.buffers) {
    INFO("final buffer " << n);
    GRAFT_REQUIRE_CLOSE(b, c.at("final_" + n), kTolF32);
  }
}

}  // namespace

TEST_CASE("e2e: MLP 16-32-4 (tanh) matches PyTorch over 5 SGD steps", "[e2e][parity]") {
  const GoldenCase& c = model_case("mlp");
  ModelState s = load_state(c, {"w1", "b1", "w2", "b2"}, {});
  // x [8, 16] -> [8, 32] -> tanh -> [8, 4] logits
  train_and_compare(c, s, [](ModelState& m, const Tensor& x) {
    const auto& p = m.params;
    return linear(tanh(linear(x, p.at("w1"), p.at("b1"))), p.at("w2"), p.at("b2"));
  });
}

TEST_CASE("e2e: CNN conv-bn-relu-pool-linear matches PyTorch over 5 SGD steps", "[e2e][parity]") {
  const GoldenCase& c = model_case("cnn");
  ModelState s = load_state(c, {"conv_w", "conv_b", "bn_w", "bn_b", "fc_w", "fc_b"}, {"running_mean", "running_var"});
  // x [6, 1, 8, 8] -> conv 3x3 pad 1 [6, 4, 8, 8] -> batch_norm (training) -> relu -> max_pool 2 [6, 4, 4, 4]
  //   -> flatten [6, 64] -> linear [6, 3] logits
  train_and_compare(c, s, [](ModelState& m, const Tensor& x) {
    const auto& p = m.params;
    Tensor h = conv2d(x, p.at("conv_w"), p.at("conv_b"), {1, 1}, {1, 1});
    h = batch_norm(h, m.buffers.at("running_mean"), m.buffers.at("running_var"), p.at("bn_w"), p.at("bn_b"), true,
                   0.1, 1e-5);
    h = max_pool2d(relu(h), {2, 2});
    return linear(h.flatten(1), p.at("fc_w"), p.at("fc_b"));
  });
}

