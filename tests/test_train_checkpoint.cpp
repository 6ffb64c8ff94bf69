// tests/test_train_checkpoint.cpp - saving and resuming a whole training run: a resumed run continues
// bit for bit, a checkpoint for another architecture is refused naming the keys, and a process
// killed in the middle of a save leaves the previous checkpoint intact.
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <thread>

#include "harness.hpp"
#include "graft/nn.hpp"
#include "graft/optim/adam.hpp"
#include "graft/optim/schedule.hpp"
#include "graft/optim/sgd.hpp"
#include "graft/train/checkpoint.hpp"

extern char** environ;

namespace {
using namespace graft;
using graft_test::require_error;

std::shared_ptr<nn::Sequential> ckpt_model(uint64_t seed) {
  manual_seed(seed);
  auto net = std::make_shared<nn::Sequential>();
  net->push_back(std::make_shared<nn::Linear>(6, 8));
  net->push_back(std::make_shared<nn::ReLU>());
  net->push_back(std::make_shared<nn::Dropout>(0.3));
  net->push_back(std::make_shared<nn::Linear>(8, 3));
  return net;
}

// One AdamW step on batch `step` (inputs from their own seeded generator; dropout draws from the
// default generator, which the checkpoint carries).
void ckpt_train_step(nn::Module& net, optim::Optimizer& opt, const optim::Schedule& sched, int64_t step) {
  Generator g(1000 + uint64_t(step));
  const Tensor x = randn({5, 6}, DType::Float32, g);
  const Tensor y = randint(0, 3, {5}, DType::Int64, g);
  sched.apply(opt, step);
  opt.zero_grad();
  cross_entropy(net.forward(x), y).backward();
  opt.step();
}

std::string ckpt_tmp(const std::string& name) {
  const auto dir = std::filesystem::temp_directory_path() / ("graft_test_ckpt_" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  return (dir / name).string();
}
}  // namespace

TEST_CASE("checkpoint: a resumed run continues exactly (model, AdamW, schedule, RNG)", "[train][checkpoint]") {
  const optim::CosineWithWarmup sched(2, 8);
  // Straight through: 6 steps.
  auto a = ckpt_model(7);
  optim::AdamW opt_a(a->parameters(), 1e-2);
  manual_seed(42);
  for (int64_t s = 0; s < 6; ++s) ckpt_train_step(*a, opt_a, sched, s);
  // 3 steps, save, then a fresh model and optimizer (other init, other lr, other RNG) resume.
  auto b = ckpt_model(7);
  optim::AdamW opt_b(b->parameters(), 1e-2);
  manual_seed(42);
  for (int64_t s = 0; s < 3; ++s) ckpt_train_step(*b, opt_b, sched, s);
  const std::string path = ckpt_tmp("resume.safetensors");
  train::save_checkpoint(path, *b, opt_b, {3, 1}, default_generator(), {{"architecture", "mlp"}});
  auto c = ckpt_model(99);
  optim::AdamW opt_c(c->parameters(), 0.5);
  manual_seed(12345);
  const train::TrainProgress p = train::load_checkpoint(path, *c, opt_c, default_generator());
  CHECK(p.step == 3);
  CHECK(p.epoch == 1);
  for (int64_t s = p.step; s < 6; ++s) ckpt_train_step(*c, opt_c, sched, s);
  const auto sa = a->state_dict(), sc = c->state_dict();
  REQUIRE(sa.size() == sc.size());
  for (size_t i = 0; i < sa.size(); ++i) {
    INFO(sa[i].first);
    CHECK(graft_test::max_abs_diff(sa[i].second, sc[i].second) == 0.0);  // bit for bit
  }
  CHECK(io::SafetensorsFile(path).metadata().at("architecture") == "mlp");
}

TEST_CASE("checkpoint: another architecture or a non-checkpoint file is refused", "[train][checkpoint]") {
  auto net = ckpt_model(1);
  optim::AdamW opt(net->parameters());
  const std::string path = ckpt_tmp("arch.safetensors");
  train::save_checkpoint(path, *net, opt, {10, 2}, default_generator());
  auto other = std::make_shared<nn::Sequential>();
  other->push_back(std::make_shared<nn::Linear>(6, 16));
  other->push_back(std::make_shared<nn::ReLU>());
  other->push_back(std::make_shared<nn::Linear>(16, 3));
  optim::AdamW opt2(other->parameters());
  const Tensor before = other->state_dict()[0].second.clone();
  require_error([&] { train::load_checkpoint(path, *other, opt2, default_generator()); },
                {"load_checkpoint", path, "does not fit", "0.weight", "[16, 6]", "[8, 6]"});
  CHECK(graft_test::max_abs_diff(other->state_dict()[0].second, before) == 0.0);  // untouched
  const std::string plain = ckpt_tmp("plain.safetensors");
  io::save_safetensors(plain, net->state_dict());
  require_error([&] { train::load_checkpoint(plain, *net, opt, default_generator()); },
                {"load_checkpoint", "not a Graft training checkpoint", "missing"});
}

// The child half of the next test: saves a large checkpoint over and over until killed.
TEST_CASE("checkpoint: (child process) save in a loop", "[.][checkpoint_child]") {
  const char* path = std::getenv("GRAFT_CKPT_CHILD_PATH");
  REQUIRE(path != nullptr);
  nn::Sequential big;
  for (int i = 0; i < 4; ++i) big.push_back(std::make_shared<nn::Linear>(2048, 2048));  // 64 MB
  optim::SGD opt(big.parameters(), 0.1);
  for (int64_t i = 0;; ++i) train::save_checkpoint(path, big, opt, {i, 0}, default_generator());
}

TEST_CASE("checkpoint: a process killed mid-save leaves the previous checkpoint intact", "[train][checkpoint]") {
  auto net = ckpt_model(3);
  optim::AdamW opt(net->parameters());
  const std::string path = ckpt_tmp("killed.safetensors");
  train::save_checkpoint(path, *net, opt, {5, 0}, default_generator());
  const std::uintmax_t good_size = std::filesystem::file_size(path);
  // The child (this test binary, running the hidden case above) overwrites `path` in a loop; we kill it
  // while a temporary file is being written.
  const std::string self = std::filesystem::read_symlink("/proc/self/exe").string();
  const std::string env_path = "GRAFT_CKPT_CHILD_PATH=" + path;
  std::vector<std::string> env_store;
  for (char** e = environ; *e; ++e) env_store.emplace_back(*e);
  env_store.push_back(env_path);
  std::vector<char*> envp;
  for (auto& s : env_store) envp.push_back(s.data());
  envp.push_back(nullptr);
  std::string arg0 = self, arg1 = "[checkpoint_child]";
  char* argv[] = {arg0.data(), arg1.data(), nullptr};
  pid_t pid = 0;
  REQUIRE(posix_spawn(&pid, self.c_str(), nullptr, nullptr, argv, envp.data()) == 0);
  const std::string tmp = path + ".tmp." + std::to_string(pid);
  bool seen = false;
  for (int i = 0; i < 200000 && !seen; ++i) {  // up to ~20 s
    std::error_code ec;
    seen = std::filesystem::exists(tmp, ec) && std::filesystem::file_size(tmp, ec) > 0;
    if (!seen) std::this_thread::sleep_for(std::chrono::microseconds(100));
  }
  ::kill(pid, SIGKILL);
  int status = 0;
  ::waitpid(pid, &status, 0);
  REQUIRE(seen);
  CHECK(WIFSIGNALED(status));
  // `path` is either the first checkpoint or one of the child's complete ones: never a torn file.
  auto fresh = ckpt_model(4);
  optim::AdamW opt2(fresh->parameters());
  if (std::filesystem::file_size(path) == good_size) {
    const train::TrainProgress p = train::load_checkpoint(path, *fresh, opt2, default_generator());
    CHECK(p.step == 5);
    CHECK(graft_test::max_abs_diff(fresh->state_dict()[0].second, net->state_dict()[0].second) == 0.0);
  } else {
    io::SafetensorsFile f(path);  // a complete file from the child: parses, every range in bounds
    CHECK(f.metadata().at("format") == "graft-training-state");
  }
  std::filesystem::remove(tmp);
}

// ---- non-finite guards -----------------------------------------------------------------------------
#include "graft/optim/sgd.hpp"
#include "graft/train/guard.hpp"

TEST_CASE("guard: a learning rate that diverges stops training naming the step and the tensor", "[train]") {
  auto net = ckpt_model(5);
  net->eval();
  optim::SGD opt(net->parameters(), 1e30);  // absurd: the first update overflows
  Generator g(1);
  const Tensor x = mul(randn({5, 6}, DType::Float32, g), 1e10);
  const Tensor y = randint(0, 3, {5}, DType::Int64, g);
  int64_t step = 0;
  std::string message;
  try {
    for (; step < 10; ++step) {
      opt.zero_grad();
      const Tensor loss = cross_entropy(net->forward(x), y);
      train::check_finite_loss(loss, step, "cross_entropy");
      loss.backward();
      train::check_finite_grads(*net, step);
      opt.step();
      train::check_finite_params(*net, step);
    }
  } catch (const Error& e) {
    message = e.what();
  }
  INFO(message);
  CHECK(message.find("training stopped at step " + std::to_string(step)) != std::string::npos);
  CHECK(step < 3);
  CHECK((message.find("cross_entropy is") != std::string::npos || message.find("parameter '") != std::string::npos ||
         message.find("gradient of '") != std::string::npos));
  // Each guard on its own.
  require_error([] { train::check_finite_loss(full({}, NAN), 4); }, {"step 4", "loss is nan"});
  Tensor w = net->state_dict()[0].second;
  {
    NoGradGuard ng;
    w.data<float>()[7] = INFINITY;
  }
  require_error([&] { train::check_finite_params(*net, 9); }, {"step 9", "parameter '0.weight'", "[8, 6]", "inf", "element 7"});
}
