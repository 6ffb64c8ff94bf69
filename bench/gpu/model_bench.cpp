// bench/gpu/model_bench.cpp - whole models on the GPU through Graft's public API (graft::cuda_backend
// fills the kernel slots), float32, exact matmul precision ("highest"), against PyTorch eager
// measured in the same run (bench/gpu/torch_baselines.py writes the JSON given with --baselines):
//   resnet50 train   ResNet-50 training step, batch 64 at 224x224, 1000 classes: forward, cross-
//                    entropy, backward, SGD with momentum 0.9 (weight decay 1e-4); images / s
//   bert-base infer  BERT-base (12 layers, hidden 768, vocab 30522) inference, batch 32, sequence 128,
//                    no padding: forward_bert (last hidden state and pooler) under no grad; sequences / s
// Each row twice: float32, and under AutocastGuard(BFloat16, CUDA) (issue 12: matmuls, convolutions and
// attention on the tensor cores, gemm_bf16.cuh, conv2d.cuh, attention_mma.cuh).
//   vit-b/16 infer   ViT-B/16 (timm's vit_base_patch16_224) inference, batch 64 at 224x224; images / s
//   sdpa bf16        scaled_dot_product_attention in bfloat16, B 8, H 16, S 2048, D 64, no mask: forward,
//                    and forward + backward; TFLOP/s as FlashAttention counts them (forward 4 B H S^2 D,
//                    backward 2.5 times that)
// Random weights (the speed does not depend on them) and random inputs. Before timing, each row checks
// that its output is finite and that the model's tensors are on the GPU. Timing: 3 warm-up
// iterations, then the median of the timed ones (--quick: 5, else 20), each ended by
// cudaDeviceSynchronize. Prints `| row | graft | baseline | ratio |` (ratio = graft / baseline, higher
// is better for Graft; baseline "-" without --baselines or when the file lacks the row). Exit 0; 1 if
// a check failed or an op threw (a missing CUDA kernel names itself); 77 without a visible GPU.
//   graft_gpu_model_bench [--quick] [--baselines torch_baselines.json]
#include <cuda_runtime.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <optional>
#include <fstream>
#include <functional>
#include <iterator>
#include <string>
#include <vector>

#include "graft/graft.hpp"
#include "graft/io/json.hpp"
#include "graft/models/bert.hpp"
#include "graft/models/resnet.hpp"
#include "graft/models/vit.hpp"
#include "graft/optim/sgd.hpp"

namespace {

using namespace graft;

// Median seconds of fn over `runs` timed iterations after 3 warm-ups, each ended by a device sync.
double median_seconds(int runs, const std::function<void()>& fn) {
  using Clock = std::chrono::steady_clock;
  for (int i = 0; i < 3; ++i) fn();
  GRAFT_CHECK(cudaDeviceSynchronize() == cudaSuccess, "model_bench", "cudaDeviceSynchronize failed after warm-up");
  std::vector<double> s;
  for (int i = 0; i < runs; ++i) {
    const auto t0 = Clock::now();
    fn();
    GRAFT_CHECK(cudaDeviceSynchronize() == cudaSuccess, "model_bench", "cudaDeviceSynchronize failed");
    s.push_back(std::chrono::duration<double>(Clock::now() - t0).count());
  }
  std::sort(s.begin(), s.end());
  return s[s.size() / 2];
}

void check_on(nn::Module& m, Device d, const char* what) {
  for (const auto& [name, p] : m.named_parameters())
    GRAFT_CHECK(p.device() == d, "model_bench", what, ": parameter ", name, " is on ", p.device(), ", not ", d);
}
void check_finite(const Tensor& t, const char* what) {
  for (double v : t.to(DType::Float32).to_vector()) GRAFT_CHECK(std::isfinite(v), "model_bench", what, ": output is not finite");
}

// The baselines JSON's "rows" object: row name -> value (NaN when absent).
struct Baselines {
  io::JsonValue json;
  bool loaded = false;
  double get(const std::string& key) const {
    if (!loaded) return NAN;
    const io::JsonValue* rows = json.find("rows");
    const io::JsonValue* v = rows && rows->is_object() ? rows->find(key) : nullptr;
    return v && v->is_number() ? v->as_double() : NAN;
  }
};

void print_row(const char* row, double graft, double baseline, const char* unit) {
  char b[32] = "-", r[32] = "-";
  if (std::isfinite(baseline) && baseline > 0) {
    std::snprintf(b, sizeof b, "%.1f", baseline);
    std::snprintf(r, sizeof r, "%.2f", graft / baseline);
  }
  std::printf("| %s (%s) | %.1f | %s | %s |\n", row, unit, graft, b, r);
  std::fflush(stdout);
}

}  // namespace

int main(int argc, char** argv) {
  bool quick = false;
  std::string baselines_path;
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--quick") == 0) {
      quick = true;
    } else if (std::strcmp(argv[i], "--baselines") == 0 && i + 1 < argc) {
      baselines_path = argv[++i];
    } else {
      std::fprintf(stderr, "usage: graft_gpu_model_bench [--quick] [--baselines torch_baselines.json]\n");
      return 2;
    }
  }
  int devices = 0;
  if (cudaGetDeviceCount(&devices) != cudaSuccess || devices == 0) {
    std::printf("graft_gpu_model_bench: SKIPPED (no CUDA device visible)\n");
    return 77;
  }
  const int runs = quick ? 5 : 20;
  bool all_right = true;
  try {
    Baselines base;
    if (!baselines_path.empty()) {
      std::ifstream f(baselines_path, std::ios::binary);
      GRAFT_CHECK(f.good(), "model_bench", "cannot open --baselines ", baselines_path);
      const std::string text((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
      base.json = io::parse_json(text, baselines_path);
      base.loaded = true;
    }
    cudaDeviceProp prop{};
    GRAFT_CHECK(cudaGetDeviceProperties(&prop, 0) == cudaSuccess, "model_bench", "cudaGetDeviceProperties failed");
    std::printf("# whole models, float32 (matmul precision \"%s\"), on %s; baseline: PyTorch eager%s\n",
                get_float32_matmul_precision().c_str(), prop.name,
                base.loaded ? (" from " + baselines_path).c_str() : " (not given)");
    std::printf("| row | graft | baseline | ratio |\n|---|---|---|---|\n");
    const Device gpu = cuda(0);

    for (const DType precision : {DType::Float32, DType::BFloat16})
    try {  // ResNet-50 training step (bfloat16: forward and loss under autocast, backward after it)
      const bool bf16 = precision == DType::BFloat16;
      const int64_t B = 64;
      manual_seed(1);
      auto model = models::resnet50(1000);
      model->to(gpu);
      check_on(*model, gpu, "ResNet-50");
      model->train();
      Generator g(2);
      const Tensor x = randn({B, 3, 224, 224}, DType::Float32, g).to(gpu);
      const Tensor y = randint(0, 1000, {B}, DType::Int64, g).to(gpu);
      optim::SGD opt(model->parameters(), 0.01, 0.9, 0.0, 1e-4);
      Tensor last_loss;
      auto step = [&] {
        opt.zero_grad();
        Tensor loss;
        {
          std::optional<AutocastGuard> amp;
          if (bf16) amp.emplace(DType::BFloat16, DeviceType::CUDA);
          loss = cross_entropy(model->forward(x), y);
        }
        loss.backward();
        opt.step();
        last_loss = loss;
      };
      step();
      check_finite(last_loss, "ResNet-50 training loss");
      const double s = median_seconds(runs, step);
      print_row(bf16 ? "ResNet-50 training step, bf16 autocast, batch 64" : "ResNet-50 training step, fp32, batch 64",
                double(B) / s, base.get(bf16 ? "resnet50_train_bf16_b64_img_s" : "resnet50_train_fp32_b64_img_s"),
                "img/s");
    } catch (const std::exception& e) {
      std::printf("| ResNet-50 training step, %s, batch 64 (img/s) | FAILED: %s | - | - |\n",
                  precision == DType::BFloat16 ? "bf16 autocast" : "fp32", e.what());
      all_right = false;
    }

    for (const DType precision : {DType::Float32, DType::BFloat16})
    try {  // BERT-base inference (bfloat16: under autocast)
      const bool bf16 = precision == DType::BFloat16;
      const int64_t B = 32, T = 128;
      manual_seed(3);
      models::BertConfig cfg = models::BertConfig::bert_base_uncased();
      auto model = std::make_shared<models::BertModel>(cfg);
      model->to(gpu);
      check_on(*model, gpu, "BERT-base");
      model->eval();
      Generator g(4);
      const Tensor ids = randint(1, cfg.vocab_size, {B, T}, DType::Int64, g).to(gpu);
      const Tensor mask = ones({B, T}, DType::Int64, gpu);
      Tensor last;
      auto infer = [&] {
        NoGradGuard no_grad;
        std::optional<AutocastGuard> amp;
        if (bf16) amp.emplace(DType::BFloat16, DeviceType::CUDA);
        last = model->forward_bert(ids, mask).last_hidden_state;
      };
      infer();
      check_finite(last, "BERT-base last hidden state");
      const double s = median_seconds(runs, infer);
      print_row(bf16 ? "BERT-base inference, bf16 autocast, batch 32, seq 128" : "BERT-base inference, fp32, batch 32, seq 128",
                double(B) / s, base.get(bf16 ? "bert_base_infer_bf16_b32_s128_seq_s" : "bert_base_infer_fp32_b32_s128_seq_s"),
                "seq/s");
    } catch (const std::exception& e) {
      std::printf("| BERT-base inference, %s, batch 32, seq 128 (seq/s) | FAILED: %s | - | - |\n",
                  precision == DType::BFloat16 ? "bf16 autocast" : "fp32", e.what());
      all_right = false;
    }

    for (const DType precision : {DType::Float32, DType::BFloat16})
    try {  // ViT-B/16 inference, batch 64 (bfloat16: under autocast)
      const bool bf16 = precision == DType::BFloat16;
      const int64_t B = 64;
      manual_seed(6);
      auto model = models::vit_base_patch16_224(1000);
      model->to(gpu);
      check_on(*model, gpu, "ViT-B/16");
      model->eval();
      Generator g(7);
      const Tensor imgs = randn({B, 3, 224, 224}, DType::Float32, g).to(gpu);
      Tensor logits;
      auto infer = [&] {
        NoGradGuard no_grad;
        std::optional<AutocastGuard> amp;
        if (bf16) amp.emplace(DType::BFloat16, DeviceType::CUDA);
        logits = model->forward(imgs);
      };
      infer();
      check_finite(logits, "ViT-B/16 logits");
      const double s = median_seconds(runs, infer);
      print_row(bf16 ? "ViT-B/16 inference, bf16 autocast, batch 64" : "ViT-B/16 inference, fp32, batch 64",
                double(B) / s, base.get(bf16 ? "vit_b16_infer_bf16_b64_img_s" : "vit_b16_infer_fp32_b64_img_s"),
                "img/s");
    } catch (const std::exception& e) {
      std::printf("| ViT-B/16 inference, %s, batch 64 (img/s) | FAILED: %s | - | - |\n",
                  precision == DType::BFloat16 ? "bf16 autocast" : "fp32", e.what());
      all_right = false;
    }

    try {  // scaled dot-product attention in bfloat16 (attention_mma.cuh): B 8, H 16, S 2048, D 64, no mask
      const int64_t B = 8, H = 16, S = 2048, D = 64;
      Generator g(5);
      auto leaf = [&] { return randn({B, H, S, D}, DType::Float32, g).to(DType::BFloat16).to(gpu).set_requires_grad(); };
      const Tensor q = leaf(), k = leaf(), v = leaf();
      const Tensor gout = randn({B, H, S, D}, DType::Float32, g).to(DType::BFloat16).to(gpu);
      const double fwd_flop = 4.0 * double(B * H) * double(S) * double(S) * double(D);  // backward: 2.5 x
      Tensor out;
      auto fwd = [&] {
        NoGradGuard no_grad;
        out = scaled_dot_product_attention(q, k, v);
      };
      auto fwd_bwd = [&] { autograd::grad({scaled_dot_product_attention(q, k, v)}, {q, k, v}, {gout}); };
      fwd();
      check_finite(out, "attention output");
      print_row("SDPA bf16 forward, B 8, H 16, S 2048, D 64", fwd_flop / median_seconds(runs, fwd) / 1e12,
                base.get("sdpa_bf16_b8_h16_s2048_d64_fwd_tflops"), "TFLOP/s");
      print_row("SDPA bf16 forward + backward, B 8, H 16, S 2048, D 64",
                3.5 * fwd_flop / median_seconds(runs, fwd_bwd) / 1e12,
                base.get("sdpa_bf16_b8_h16_s2048_d64_fwd_bwd_tflops"), "TFLOP/s");
    } catch (const std::exception& e) {
      std::printf("| SDPA bf16, B 8, H 16, S 2048, D 64 (TFLOP/s) | FAILED: %s | - | - |\n", e.what());
      all_right = false;
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "graft_gpu_model_bench: %s\n", e.what());
    return 1;
  }
  return all_right ? 0 : 1;
}
