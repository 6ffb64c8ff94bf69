// bench_grad_checkpoint: what gradient checkpointing (graft/autograd/checkpoint.hpp) trades. A
// ViT-B/16 fine-tuning step (models::create("vit_base_patch16_224", 10 classes), train mode:
// zero_grad, forward of [B, 3, 224, 224], cross_entropy, backward) without checkpointing (the
// baseline, same run) and with set_grad_checkpointing(): peak CPU tensor memory
// (cpu_memory_stats().peak_allocated_bytes: the whole peak, and the part above what was allocated
// before the step: weights, inputs), step time (median of --reps after --warmup), and the largest
// relative difference of the two runs' gradients (per parameter max |g_ckpt - g_plain| / max |g_plain|).
// A plain timing program like bench_models: the step is seconds long.
//
//   cmake -S . -B build-bench -DGRAFT_BUILD_BENCH=ON -DGRAFT_BUILD_TESTS=OFF -DGRAFT_BUILD_EXAMPLES=OFF -DGRAFT_CUDA=OFF
//   cmake --build build-bench --target bench_grad_checkpoint
//   ./build-bench/bench/bench_grad_checkpoint [--batch 8] [--reps 2] [--warmup 1] [--threads T]
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <string>
#include <vector>

#include "graft/graft.hpp"
#include "graft/models/registry.hpp"
#include "graft/models/vit.hpp"

using namespace graft;

namespace {

struct StepResult {
  double median_s = 0, forward_s = 0;
  size_t peak_bytes = 0, peak_above_base = 0;
};

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

StepResult run(models::VisionTransformer& vit, const Tensor& x, const Tensor& y, bool ckpt, int warmup, int reps) {
  vit.set_grad_checkpointing(ckpt);
  StepResult r;
  std::vector<double> times, fwd;
  for (int i = 0; i < warmup + reps; ++i) {
    vit.zero_grad();
    const size_t base = cpu_memory_stats().allocated_bytes;
    cpu_reset_peak_memory_stats();
    const auto t0 = std::chrono::steady_clock::now();
    const Tensor loss = cross_entropy(vit.forward(x), y);
    const double f = seconds_since(t0);
    loss.backward();
    const double t = seconds_since(t0);
    const CpuMemoryStats m = cpu_memory_stats();
    if (i >= warmup) {
      times.push_back(t);
      fwd.push_back(f);
    }
    r.peak_bytes = m.peak_allocated_bytes;  // the same every step (deterministic accounting)
    r.peak_above_base = m.peak_allocated_bytes - base;
    if (!std::isfinite(loss.item())) {
      std::fprintf(stderr, "non-finite loss\n");
      std::exit(1);
    }
  }
  std::sort(times.begin(), times.end());
  std::sort(fwd.begin(), fwd.end());
  r.median_s = times[times.size() / 2];
  r.forward_s = fwd[fwd.size() / 2];
  return r;
}

std::map<std::string, Tensor> grads_of(models::VisionTransformer& vit) {
  std::map<std::string, Tensor> g;
  for (auto& [name, p] : vit.named_parameters()) g[name] = p.grad().clone();
  return g;
}

}  // namespace

int main(int argc, char** argv) {
  int batch = 8, reps = 2, warmup = 1, threads = 0;
  for (int i = 1; i < argc; ++i) {
    auto next = [&](const char* flag) {
      if (i + 1 >= argc) {
        std::fprintf(stderr, "%s needs a value\n", flag);
        std::exit(2);
      }
      return std::atoi(argv[++i]);
    };
    if (!std::strcmp(argv[i], "--batch")) batch = next("--batch");
    else if (!std::strcmp(argv[i], "--reps")) reps = next("--reps");
    else if (!std::strcmp(argv[i], "--warmup")) warmup = next("--warmup");
    else if (!std::strcmp(argv[i], "--threads")) threads = next("--threads");
    else {
      std::fprintf(stderr, "usage: %s [--batch N] [--reps N] [--warmup N] [--threads T]\n", argv[0]);
      return 2;
    }
  }
  if (batch < 1 || reps < 1 || warmup < 0) {
    std::fprintf(stderr, "--batch and --reps must be >= 1, --warmup >= 0\n");
    return 2;
  }
  if (threads > 0) set_num_threads(threads);

  manual_seed(0);
  auto vit = std::dynamic_pointer_cast<models::VisionTransformer>(
      models::create("vit_base_patch16_224", {.num_classes = 10}));
  vit->train();
  Generator g(1);
  const Tensor x = randn({batch, 3, 224, 224}, DType::Float32, g);
  const Tensor y = randint(0, 10, {batch}, DType::Int64, g);

  std::printf("ViT-B/16 fine-tuning step (forward + cross_entropy + backward), batch %d, fp32, %d threads, "
              "%d warmup + %d timed steps each; %lld parameters (%.1f MiB)\n",
              batch, get_num_threads(), warmup, reps, static_cast<long long>(vit->num_parameters()),
              double(vit->num_parameters()) * 4 / (1 << 20));
  // Both measured with nothing else held (the gradients compared below are kept only afterwards).
  const StepResult plain = run(*vit, x, y, false, warmup, reps);
  const StepResult ckpt = run(*vit, x, y, true, warmup, reps);
  const std::map<std::string, Tensor> ckpt_grads = grads_of(*vit);
  run(*vit, x, y, false, 0, 1);  // the plain gradients again, for the comparison
  const std::map<std::string, Tensor> plain_grads = grads_of(*vit);

  double max_rel = 0;
  std::string worst;
  int bit_equal = 0;
  for (const auto& [name, gp] : plain_grads) {
    const Tensor& gc = ckpt_grads.at(name);
    const double scale = max(abs(gp)).item();
    const double diff = max(abs(sub(gc, gp))).item();
    const double rel = scale > 0 ? diff / scale : diff;
    if (diff == 0) ++bit_equal;
    if (rel > max_rel) {
      max_rel = rel;
      worst = name;
    }
  }

  const double mib = 1 << 20;
  std::printf("\n| run | peak allocated (MiB) | peak above weights+inputs (MiB) | step (s, median) | forward (s) |\n");
  std::printf("|---|---|---|---|---|\n");
  std::printf("| plain (baseline) | %.1f | %.1f | %.2f | %.2f |\n", double(plain.peak_bytes) / mib,
              double(plain.peak_above_base) / mib, plain.median_s, plain.forward_s);
  std::printf("| set_grad_checkpointing | %.1f | %.1f | %.2f | %.2f |\n", double(ckpt.peak_bytes) / mib,
              double(ckpt.peak_above_base) / mib, ckpt.median_s, ckpt.forward_s);
  std::printf("\ncheckpointed / plain: peak %.2fx (above weights %.2fx), step time %.2fx\n",
              double(ckpt.peak_bytes) / double(plain.peak_bytes),
              double(ckpt.peak_above_base) / double(plain.peak_above_base), ckpt.median_s / plain.median_s);
  std::printf("gradients: max relative difference %.3g (%s), %d of %zu parameters bit-equal\n", max_rel,
              worst.empty() ? "none" : worst.c_str(), bit_equal, plain_grads.size());
  return 0;
}
