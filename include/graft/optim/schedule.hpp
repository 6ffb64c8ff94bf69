// graft/optim/schedule.hpp - learning-rate schedules: a factor of the step, applied to every group as
// lr = initial_lr * factor(step), so per-group ratios (head 10x backbone, layer-wise decay) are kept.
//
//   optim::CosineWithWarmup sched(/*warmup_steps=*/100, /*total_steps=*/2000);
//   for (int64_t step = 0; step < 2000; ++step) {
//     sched.apply(opt, step);            // before opt.step(): the lr this step uses
//     ...; opt.step();
//   }
//
// The schedules, with p = step / total_steps clamped to [0, 1]:
//   StepLR(step_size, gamma)                 gamma ^ floor(step / step_size)      (torch StepLR)
//   CosineWithWarmup(warmup, total, min)     step / warmup during warmup, then
//                                            min + (1 - min) * 0.5 * (1 + cos(pi * progress)),
//                                            progress = (step - warmup) / (total - warmup)
//                                            (Hugging Face's get_cosine_schedule_with_warmup at min 0)
//   GaninAnnealing(total, alpha 10, beta .75) 1 / (1 + alpha p) ^ beta   (Ganin & Lempitsky 2015: the
//                                            DANN schedule lr_p = lr0 / (1 + 10 p)^0.75)
#pragma once
#include <cmath>
#include <cstdint>
#include <string>

#include "graft/optim/optimizer.hpp"

namespace graft::optim {

class Schedule {
 public:
  virtual ~Schedule() = default;
  virtual double factor(int64_t step) const = 0;
  // Sets every group's lr to initial_lr * factor(step).
  void apply(Optimizer& opt, int64_t step) const {
    GRAFT_CHECK(step >= 0, "Schedule", "step must be >= 0, got ", step);
    const double f = factor(step);
    GRAFT_CHECK(std::isfinite(f) && f >= 0.0, "Schedule", "factor(", step, ") is ", f,
                ", expected a finite factor >= 0");
    auto& groups = opt.param_groups();
    for (size_t g = 0; g < groups.size(); ++g) {
      const double lr = groups[g].initial_lr * f;
      GRAFT_CHECK(std::isfinite(lr) && lr >= 0.0, "Schedule", "step ", step, ": group ", g,
                  groups[g].name.empty() ? std::string() : " ('" + groups[g].name + "')", " would get learning rate ",
                  lr, " = initial_lr ", groups[g].initial_lr, " * factor ", f, ", expected a finite lr >= 0");
    }
    for (auto& g : groups) g.lr = g.initial_lr * f;
  }
};

class StepLR : public Schedule {
 public:
  StepLR(int64_t step_size, double gamma = 0.1) : step_size_(step_size), gamma_(gamma) {
    GRAFT_CHECK(step_size > 0, "StepLR", "step_size must be > 0, got ", step_size);
    GRAFT_CHECK(gamma > 0.0, "StepLR", "gamma must be > 0, got ", gamma);
  }
  double factor(int64_t step) const override { return std::pow(gamma_, double(step / step_size_)); }

 private:
  int64_t step_size_;
  double gamma_;
};

class CosineWithWarmup : public Schedule {
 public:
  CosineWithWarmup(int64_t warmup_steps, int64_t total_steps, double min_factor = 0.0)
      : warmup_(warmup_steps), total_(total_steps), min_(min_factor) {
    GRAFT_CHECK(warmup_steps >= 0 && total_steps > warmup_steps, "CosineWithWarmup",
                "need 0 <= warmup_steps < total_steps, got warmup_steps ", warmup_steps, " and total_steps ",
                total_steps);
    GRAFT_CHECK(min_factor >= 0.0 && min_factor <= 1.0, "CosineWithWarmup", "min_factor must be in [0, 1], got ",
                min_factor);
  }
  double factor(int64_t step) const override {
    if (step < warmup_) return double(step) / double(warmup_);
    const double progress = std::min(1.0, double(step - warmup_) / double(total_ - warmup_));
    return min_ + (1.0 - min_) * 0.5 * (1.0 + std::cos(M_PI * progress));
  }

 private:
  int64_t warmup_, total_;
  double min_;
};

class GaninAnnealing : public Schedule {
 public:
  explicit GaninAnnealing(int64_t total_steps, double alpha = 10.0, double beta = 0.75)
      : total_(total_steps), alpha_(alpha), beta_(beta) {
    GRAFT_CHECK(total_steps > 0, "GaninAnnealing", "total_steps must be > 0, got ", total_steps);
  }
  double factor(int64_t step) const override {
    const double p = std::min(1.0, double(step) / double(total_));
    return 1.0 / std::pow(1.0 + alpha_ * p, beta_);
  }

 private:
  int64_t total_;
  double alpha_, beta_;
};

}  // namespace graft::optim
