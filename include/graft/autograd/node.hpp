// graft/autograd/node.hpp - the graph: Node (one backward step), Edge, SavedTensor, and connect().
//
// Every differentiable op that sees an input requiring grad (with grad mode on) makes one Node:
//
//   out = op(inputs)            forward, computed without history
//   node->next_edges[i]         where the gradient of inputs[i] goes: the producer's node, or the
//                               leaf's AccumulateGrad; an empty edge when inputs[i] needs no grad
//   node->apply(dout)           returns one gradient per next edge (undefined where not needed)
//
// Inputs that do not require grad get an empty edge, so a frozen subtree is never visited and its
// nodes are never created: it costs no backward work.
#pragma once
#include <atomic>
#include <functional>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "graft/autograd/grad_mode.hpp"
#include "graft/core/tensor.hpp"

namespace graft::autograd {

struct Edge {
  std::shared_ptr<Node> fn;
  uint32_t input_nr = 0;  // which output of fn this gradient belongs to
  bool valid() const { return fn != nullptr; }
};

struct OutputMeta {
  Shape shape;
  DType dtype = DType::Float32;
  Device device;
};

inline uint64_t next_sequence_nr() {
  static std::atomic<uint64_t> n{0};
  return n.fetch_add(1, std::memory_order_relaxed);
}

class Node {
 public:
  virtual ~Node() = default;
  virtual std::string name() const = 0;
  // grads[i]: gradient w.r.t. forward output i (undefined if none reached it).
  // Returns one gradient per next edge; undefined entries mean "no gradient".
  virtual std::vector<Tensor> apply(std::vector<Tensor>& grads) = 0;
  // Frees saved tensors after a backward without retain_graph.
  virtual void release_saved() {}

  bool needs_input_grad(size_t i) const { return i < next_edges.size() && next_edges[i].valid(); }

  std::vector<Edge> next_edges;
  std::vector<OutputMeta> outputs;  // one per forward output
  // Non-leaf outputs whose .grad the engine fills (Tensor::retain_grad).
  std::vector<std::pair<uint32_t, std::weak_ptr<TensorImpl>>> retained_outputs;
  uint64_t sequence_nr = next_sequence_nr();
};

// Leaf gradient sink: adds the incoming gradient into the leaf's .grad.
class AccumulateGrad final : public Node {
 public:
  explicit AccumulateGrad(std::shared_ptr<TensorImpl> v) : variable(std::move(v)) {}
  std::string name() const override { return "AccumulateGrad"; }
  std::vector<Tensor> apply(std::vector<Tensor>&) override { return {}; }  // the engine accumulates
  std::shared_ptr<TensorImpl> variable;
};

// A node whose backward needs no saved tensors, only sizes (views, reshapes): the backward is a
// closure. Nodes that keep tensors use SavedTensor members instead, so version checks and
// retain_graph apply.
class ShapeNode final : public Node {
 public:
  using Fn = std::function<std::vector<Tensor>(std::vector<Tensor>&)>;
  ShapeNode(std::string name, Fn fn) : name_(std::move(name)), fn_(std::move(fn)) {}
  std::string name() const override { return name_; }
  std::vector<Tensor> apply(std::vector<Tensor>& g) override { return fn_(g); }

 private:
  std::string name_;
  Fn fn_;
};

// Records a ShapeNode for a single-input, single-output op when the input requires grad.
inline void record_shape_op(const char* name, const Tensor& input, const Tensor& output,
                            ShapeNode::Fn backward);

// A tensor kept for backward. It records the storage version at save time; unpacking after an
// in-place change, or after the graph was freed, throws naming the node.
class SavedTensor {
 public:
  SavedTensor() = default;
  // is_output: the tensor is an output of the node that saves it; keep it without its grad_fn so
  // the node does not own itself.
  SavedTensor(const Tensor& t, bool is_output = false) {  // NOLINT
    if (!t.defined()) return;
    tensor_ = is_output ? make_view(t, t.shape(), t.strides(), t.offset()) : t;
    version_ = t.version();
    defined_ = true;
  }
  Tensor unpack(const Node* node) const {
    if (!defined_) return Tensor();
    if (released_)
      throw Error(detail::concat(
          node->name(), ": trying to backward through the graph a second time (its saved tensors ",
          "were freed); pass retain_graph=true to the first backward"));
    if (tensor_.version() != version_)
      throw Error(detail::concat(node->name(),
                                 ": a tensor saved for backward was modified by an in-place op "
                                 "(saved at version ",
                                 version_, ", now version ", tensor_.version(), ")"));
    return tensor_;
  }
  void release() {
    tensor_ = Tensor();
    released_ = defined_;
  }

 private:
  Tensor tensor_;
  uint64_t version_ = 0;
  bool defined_ = false;
  bool released_ = false;
};

// The leaf's gradient accumulator, shared by every use of that leaf in the graph.
inline std::shared_ptr<Node> grad_accumulator(const Tensor& leaf) {
  TensorImpl* impl = leaf.impl();
  if (auto acc = impl->grad_accumulator.lock()) return acc;
  auto acc = std::make_shared<AccumulateGrad>(leaf.impl_ptr());
  acc->outputs.push_back({leaf.shape(), leaf.dtype(), leaf.device()});
  impl->grad_accumulator = acc;
  return acc;
}

// Where the gradient of t goes.
inline Edge gradient_edge(const Tensor& t) {
  if (!t.defined()) return {};
  if (t.impl()->grad_fn) return {t.impl()->grad_fn, t.impl()->output_nr};
  if (t.impl()->requires_grad) return {grad_accumulator(t), 0};
  return {};
}

// True when grad mode is on and any input requires grad: only then does an op make a Node.
inline bool any_requires_grad(std::initializer_list<const Tensor*> ts) {
  if (!GradMode::enabled()) return false;
  for (const Tensor* t : ts)
    if (t->defined() && t->requires_grad()) return true;
  return false;
}
inline bool any_requires_grad(const std::vector<Tensor>& ts) {
  if (!GradMode::enabled()) return false;
  for (const Tensor& t : ts)
    if (t.defined() && t.requires_grad()) return true;
  return false;
}

// Wires `node` into the graph: edges to the inputs, and the outputs' grad_fn.
inline void connect(const std::shared_ptr<Node>& node, const std::vector<Tensor>& inputs,
                    const std::vector<Tensor>& outputs) {
  node->next_edges.clear();
  for (const Tensor& t : inputs) node->next_edges.push_back(gradient_edge(t));
  node->outputs.clear();
  for (uint32_t i = 0; i < outputs.size(); ++i) {
    const Tensor& o = outputs[i];
    if (!o.defined()) {
      node->outputs.push_back({});
      continue;
    }
    node->outputs.push_back({o.shape(), o.dtype(), o.device()});
    if (!is_floating(o.dtype())) continue;  // integer outputs (indices) carry no gradient
    o.impl()->grad_fn = node;
    o.impl()->output_nr = i;
  }
}

inline void record_shape_op(const char* name, const Tensor& input, const Tensor& output,
                            ShapeNode::Fn backward) {
  if (!any_requires_grad({&input})) return;
  connect(std::make_shared<ShapeNode>(name, std::move(backward)), {input}, {output});
}

}  // namespace graft::autograd

namespace graft {

// ---- Tensor's autograd members ----------------------------------------------------------------
inline bool Tensor::requires_grad() const { return impl_->requires_grad || impl_->grad_fn != nullptr; }
inline bool Tensor::is_leaf() const { return impl_->grad_fn == nullptr; }
inline Tensor& Tensor::set_requires_grad(bool r) {
  GRAFT_CHECK(is_leaf(), "set_requires_grad",
              "only leaf tensors can change requires_grad (this one was made by ",
              impl_->grad_fn->name(), "); use detach()");
  GRAFT_CHECK(!r || is_floating(dtype()), "set_requires_grad",
              "only floating-point tensors can require grad, got ", dtype_name(dtype()));
  impl_->requires_grad = r;
  return *this;
}
inline const Tensor& Tensor::grad() const { return impl_->grad; }
inline void Tensor::set_grad(const Tensor& g) const {
  GRAFT_CHECK(!g.defined() || g.shape() == shape(), "set_grad", "gradient shape ", g.shape(),
              " does not match tensor shape ", shape());
  impl_->grad = g;
}
inline void Tensor::zero_grad() const { impl_->grad = Tensor(); }
inline const std::shared_ptr<autograd::Node>& Tensor::grad_fn() const { return impl_->grad_fn; }
inline uint32_t Tensor::output_nr() const { return impl_->output_nr; }
inline void Tensor::retain_grad() const {
  if (is_leaf() || impl_->retains_grad) return;
  impl_->retains_grad = true;
  impl_->grad_fn->retained_outputs.emplace_back(impl_->output_nr, impl_);
}
inline Tensor Tensor::detach() const {
  Tensor d = make_view(*this, shape(), strides(), offset());
  d.impl()->name = impl_->name;
  return d;
}

}  // namespace graft
