// graft/autograd/function.hpp - the public API for writing a differentiable op by hand.
//
//   struct Scale : graft::autograd::Function<Scale> {
//     // forward runs with grad mode off; Tensor arguments are the op's inputs, others are options.
//     static graft::Tensor forward(graft::autograd::Context& ctx, const graft::Tensor& x, double k) {
//       ctx.saved_data["k"] = k;
//       return x * k;
//     }
//     // one gradient per Tensor input of forward, in order (undefined = none)
//     static std::vector<graft::Tensor> backward(graft::autograd::Context& ctx,
//                                                std::vector<graft::Tensor> dout) {
//       return {dout[0] * ctx.saved_data["k"]};
//     }
//   };
//   graft::Tensor y = Scale::apply(x, 2.0);
//
// forward may return one Tensor or a std::vector<Tensor>. An output that is (or aliases) an input
// is returned as a fresh handle, so the input keeps its own history.
#pragma once
#include <map>
#include <string>
#include <type_traits>
#include <vector>

#include "graft/autograd/node.hpp"

namespace graft::autograd {

class Context {
 public:
  void save_for_backward(const std::vector<Tensor>& ts) {
    saved_.clear();
    for (const Tensor& t : ts) saved_.emplace_back(t);
  }
  std::vector<Tensor> saved_tensors() const {
    std::vector<Tensor> out;
    for (const auto& s : saved_) out.push_back(s.unpack(node_));
    return out;
  }
  bool needs_input_grad(size_t i) const { return node_ && node_->needs_input_grad(i); }
  std::map<std::string, double> saved_data;  // scalars the backward needs

 private:
  template <class F> friend class FunctionNode;
  template <class F> friend struct Function;
  std::vector<SavedTensor> saved_;
  const Node* node_ = nullptr;
};

template <class F>
class FunctionNode final : public Node {
 public:
  std::string name() const override { return name_; }
  std::vector<Tensor> apply(std::vector<Tensor>& grads) override {
    std::vector<Tensor> g = F::backward(ctx, grads);
    GRAFT_CHECK(g.size() == next_edges.size(), name_, "backward returned ", g.size(),
                " gradients, expected one per tensor input (", next_edges.size(), ")");
    return g;
  }
  void release_saved() override {
    for (auto& s : ctx.saved_) s.release();
  }
  Context ctx;
  std::string name_;
};

namespace detail_fn {
inline void collect(std::vector<Tensor>& out, const Tensor& t) { out.push_back(t); }
template <class T>
void collect(std::vector<Tensor>&, const T&) {}
}  // namespace detail_fn

template <class F>
struct Function {
  template <class... Args>
  static auto apply(const Args&... args) {
    std::vector<Tensor> inputs;
    (detail_fn::collect(inputs, args), ...);
    auto node = std::make_shared<FunctionNode<F>>();
    node->name_ = F::name();
    node->ctx.node_ = node.get();
    const bool record = any_requires_grad(inputs);
    using Out = decltype(F::forward(node->ctx, args...));
    std::vector<Tensor> outs;
    {
      NoGradGuard no_grad;
      if constexpr (std::is_same_v<Out, Tensor>) {
        outs.push_back(F::forward(node->ctx, args...));
      } else {
        outs = F::forward(node->ctx, args...);
      }
    }
    for (Tensor& o : outs) {
      GRAFT_CHECK(o.defined(), node->name_, "forward returned an undefined tensor");
      o = o.detach();  // fresh handle: never reuse an input's (or a stale) history
    }
    if (record) connect(node, inputs, outs);
    if constexpr (std::is_same_v<Out, Tensor>) {
      return outs[0];
    } else {
      return outs;
    }
  }
  static std::string name() { return "CustomFunction"; }
};

}  // namespace graft::autograd
