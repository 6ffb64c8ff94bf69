// bench_transfer: what freezing saves. A training step (forward + backward) of ResNet-18 with every
// parameter trainable (the baseline, same run) against the same step with the backbone frozen
// (requires_grad false: backward stops at the head) and with only layer4 + fc trainable.
//
//   cmake -S . -B build-bench -DGRAFT_BUILD_BENCH=ON && cmake --build build-bench --target bench_transfer
//   ./build-bench/bench/bench_transfer        (GRAFT_NUM_THREADS sets threads)
//
// Counter "backward_ms" is the backward part alone; compare the rows' backward_ms to the "full" row.
#include <benchmark/benchmark.h>

#include <chrono>

#include "graft/graft.hpp"
#include "graft/models/resnet.hpp"

using namespace graft;

namespace {

enum class Trainable { All, Layer4AndHead, HeadOnly };

void BM_ResNet18Step(benchmark::State& state) {
  const auto mode = static_cast<Trainable>(state.range(0));
  auto model = models::resnet18(10);
  model->train();
  if (mode == Trainable::HeadOnly) model->freeze_up_to("layer4");
  if (mode == Trainable::Layer4AndHead) model->freeze_up_to("layer3");
  Generator g(1);
  const Tensor x = randn({8, 3, 64, 64}, DType::Float32, g);
  const Tensor y = randint(0, 10, {8}, DType::Int64, g);
  double backward_s = 0;
  for (auto _ : state) {
    model->zero_grad();
    const Tensor loss = cross_entropy(model->forward(x), y);
    const auto t0 = std::chrono::steady_clock::now();
    loss.backward();
    backward_s += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    benchmark::DoNotOptimize(model->classifier().find_tensor("weight").grad().data_ptr());
  }
  state.counters["backward_ms"] = benchmark::Counter(1e3 * backward_s / double(state.iterations()));
  state.counters["trainable_params"] = double(model->num_parameters(true));
  state.SetLabel(mode == Trainable::All ? "full (baseline)" : mode == Trainable::HeadOnly ? "frozen backbone" : "layer4 + head");
}
BENCHMARK(BM_ResNet18Step)->Arg(0)->Arg(2)->Arg(1)->Unit(benchmark::kMillisecond)->UseRealTime()->MinTime(2.0);

}  // namespace

BENCHMARK_MAIN();
