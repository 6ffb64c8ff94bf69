// Tensor storage, factories, random numbers, initializers, threads, printing, device errors.
#include <atomic>
#include <chrono>
#include <thread>
#include <sstream>

#include "harness.hpp"

using namespace graft;
using namespace graft_test;

TEST_CASE("CPU storage is 64-byte aligned and freed blocks are reused", "[tensor]") {
  void* first;
  {
    Tensor a = empty({1000}, DType::Float32);
    first = a.storage()->data();
    REQUIRE(reinterpret_cast<uintptr_t>(first) % 64 == 0);
  }
  Tensor b = empty({1000}, DType::Float32);  // same rounded size: the cached block comes back
  REQUIRE(b.storage()->data() == first);
  Tensor c = empty({3}, DType::Float64);
  REQUIRE(reinterpret_cast<uintptr_t>(c.data_ptr()) % 64 == 0);
}

TEST_CASE("a CUDA tensor without the CUDA backend throws naming the build flag", "[device][errors]") {
  require_error([] { (void)empty({2}, DType::Float32, cuda(0)); }, {"CUDA backend not compiled in", "GRAFT_CUDA"});
}

TEST_CASE("seeded random streams are reproducible", "[random]") {
  manual_seed(42);
  const auto a = randn({100}).to_vector();
  manual_seed(42);
  const auto b = randn({100}).to_vector();
  REQUIRE(a == b);
  Generator g1(7), g2(7), g3(8);
  REQUIRE(rand({10}, DType::Float64, g1).to_vector() == rand({10}, DType::Float64, g2).to_vector());
  REQUIRE(rand({10}, DType::Float64, g1).to_vector() != rand({10}, DType::Float64, g3).to_vector());
  // Saved generator state resumes the same stream.
  Generator g(5);
  (void)g.normal();
  const auto st = g.state();
  const double next = g.normal();
  g.set_state(st);
  REQUIRE(g.normal() == next);
}

TEST_CASE("random distributions have the right moments", "[random]") {
  Generator g(3);
  const int64_t n = 200000;
  Tensor u = rand({n}, DType::Float64, g), z = randn({n}, DType::Float64, g);
  Tensor b = bernoulli({n}, 0.3, DType::Float64, g);
  CHECK(mean(u).item() == Approx(0.5).margin(0.005));
  CHECK(var(u).item() == Approx(1.0 / 12).margin(0.002));
  CHECK(mean(z).item() == Approx(0.0).margin(0.01));
  CHECK(var(z).item() == Approx(1.0).margin(0.01));
  CHECK(mean(b).item() == Approx(0.3).margin(0.005));
  const auto r = randint(2, 5, {1000}, DType::Int64, g).to_vector();
  for (double v : r) REQUIRE((v >= 2 && v < 5));
}

TEST_CASE("initializers follow torch.nn.init's bounds", "[init]") {
  Generator g(11);
  Tensor w = empty({64, 32, 3, 3}, DType::Float64);  // fan_in 288, fan_out 576
  auto [fi, fo] = init::fan_in_and_fan_out(w);
  REQUIRE(fi == 288);
  REQUIRE(fo == 576);
  init::kaiming_uniform_(w, std::sqrt(5.0), init::FanMode::FanIn, "leaky_relu", g);  // nn.Linear/Conv2d default
  const double bound = std::sqrt(2.0 / 6.0) * std::sqrt(3.0 / 288);
  CHECK(max(abs(w)).item() <= bound);
  CHECK(max(abs(w)).item() > 0.98 * bound);
  init::xavier_normal_(w, 1.0, g);
  CHECK(std::sqrt(var(w).item()) == Approx(std::sqrt(2.0 / (288 + 576))).epsilon(0.03));
  init::kaiming_normal_(w, 0.0, init::FanMode::FanOut, "relu", g);
  CHECK(std::sqrt(var(w).item()) == Approx(std::sqrt(2.0 / 576)).epsilon(0.03));
  require_error([] { init::kaiming_uniform_(empty({5})); }, {"init", "at least 2 dims", "[5]"});
}

TEST_CASE("parallel_for covers the range once and rethrows", "[threads]") {
  std::vector<std::atomic<int>> hits(10007);
  parallel_for(0, 10007, 16, [&](int64_t lo, int64_t hi) {
    for (int64_t i = lo; i < hi; ++i) hits[size_t(i)]++;
  });
  for (auto& h : hits) REQUIRE(h.load() == 1);
  REQUIRE_THROWS_AS(parallel_for(0, 1000, 1,
                                 [](int64_t lo, int64_t) {
                                   if (lo > 0) throw Error("boom");
                                 }),
                    Error);
  REQUIRE(get_num_threads() >= 1);
}

TEST_CASE("parallel_for: a region never waits behind another thread's region", "[threads]") {
  // Thread A's region holds the pool until B's parallel_for has returned. Were B to wait for the
  // pool, A would give up after 20 s and the test fail; it passes as soon as B runs its range itself.
  std::atomic<bool> b_done{false}, a_inside{false};
  std::atomic<int64_t> b_sum{0};
  bool a_saw_b = false;
  std::thread a([&] {
    parallel_for(0, 2 * get_num_threads(), 1, [&](int64_t lo, int64_t) {
      if (lo != 0) return;
      a_inside = true;
      const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
      while (!b_done && std::chrono::steady_clock::now() < deadline) std::this_thread::yield();
      a_saw_b = b_done;
    });
  });
  while (!a_inside) std::this_thread::yield();
  parallel_for(0, 1000, 1, [&](int64_t lo, int64_t hi) { b_sum += hi - lo; });
  b_done = true;
  a.join();
  REQUIRE(b_sum == 1000);
  REQUIRE(a_saw_b);
}

TEST_CASE("parallel_for: the default thread count follows the CPU affinity", "[threads]") {
#if defined(__linux__)
  // A thread pinned to one CPU sees one available CPU (default_num_threads() reads the same mask
  // unless GRAFT_NUM_THREADS is set).
  int seen = 0;
  bool pinned = false;  // Catch2 assertions stay on the main thread
  std::thread t([&] {
    cpu_set_t all, one;
    CPU_ZERO(&one);
    if (sched_getaffinity(0, sizeof(all), &all) != 0) return;
    for (int c = 0; c < CPU_SETSIZE; ++c)
      if (CPU_ISSET(c, &all)) {
        CPU_SET(c, &one);
        break;
      }
    pinned = sched_setaffinity(0, sizeof(one), &one) == 0;
    seen = available_cpus();
  });
  t.join();
  REQUIRE(pinned);
  REQUIRE(seen == 1);
#endif
  REQUIRE(available_cpus() >= 1);
}

TEST_CASE("parallel_for: back-to-back regions from one thread cover every item once", "[threads]") {
  // Many small regions in a row (a batch-1 forward pass): late-waking workers must never run a chunk
  // of a later region twice or skip one.
  for (int it = 0; it < 3000; ++it) {
    const int64_t n = 1 + (it * 7919) % 257;
    std::vector<int> hits(size_t(n), 0);
    parallel_for(0, n, 1 + it % 5, [&](int64_t lo, int64_t hi) {
      for (int64_t i = lo; i < hi; ++i) hits[size_t(i)]++;
    });
    for (int h : hits) REQUIRE(h == 1);
  }
}

TEST_CASE("printing follows PyTorch's layout", "[print]") {
  std::ostringstream os;
  os << arange(0, 4, 1, DType::Float32).reshape({2, 2}) * 0.5;
  REQUIRE(os.str() == "tensor([[0.0000, 0.5000],\n        [1.0000, 1.5000]], dtype=float32)");
  std::ostringstream os1;
  os1 << ones({2}).set_requires_grad() * 2.0;
  REQUIRE(os1.str() == "tensor([2.0000, 2.0000], dtype=float32, grad_fn=<MulBackward>)");
  std::ostringstream os2;
  os2 << arange(3);
  REQUIRE(os2.str() == "tensor([0, 1, 2], dtype=int64)");
}

TEST_CASE("factories and shape checks", "[tensor][errors]") {
  REQUIRE(zeros({2, 3}).to_vector() == std::vector<double>(6, 0.0));
  REQUIRE(full({2}, 2.5, DType::Float64).to_vector() == std::vector<double>{2.5, 2.5});
  REQUIRE(arange(0, 1, 0.25, DType::Float32).numel() == 4);
  require_error([] { (void)from_vector(std::vector<float>{1, 2, 3}, {2, 2}); }, {"from_vector", "3", "[2, 2]"});
  require_error([] { (void)empty({2, -1}); }, {"empty", "-1"});
  require_error([] { (void)zeros({2, 3}).data<double>(); }, {"data", "float64", "float32"});
  require_error([] { (void)zeros({2, 3}).item(); }, {"item", "[2, 3]"});
  require_error([] { (void)zeros({2, 3}).size(2); }, {"size", "dim 2", "rank 2"});
  require_error([] { (void)zeros({2, 3}).permute({0, 0}); }, {"permute", "twice"});
  require_error([] { (void)zeros({2, 3}).expand({4, 3, 3}); }, {"expand", "[2, 3]", "[4, 3, 3]"});
}
