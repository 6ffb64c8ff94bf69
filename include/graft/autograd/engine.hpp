// graft/autograd/engine.hpp - runs the graph backward: backward() fills .grad of leaves,
// grad() returns gradients of chosen inputs without touching any .grad.
//
// Order: nodes run once all their consumers have run (dependency counting over the part of the
// graph that reaches what is asked for), ties broken by the newest sequence number first, as in
// PyTorch. Nodes that cannot reach a requested input are skipped in grad().
#pragma once
#include <algorithm>
#include <queue>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "graft/autograd/node.hpp"
#include "graft/core/autocast.hpp"

namespace graft {
// From graft/ops: the engine sums gradients with the differentiable ops.
Tensor add(const Tensor& a, const Tensor& b);
Tensor ones(const Shape& shape, DType dtype, Device device);
Tensor zeros(const Shape& shape, DType dtype, Device device);
Tensor sum_to(const Tensor& x, const Shape& shape);
}  // namespace graft

namespace graft::autograd {

namespace detail_engine {

struct NodeHash {
  size_t operator()(const Node* n) const { return std::hash<const Node*>()(n); }
};

inline Tensor accumulate(const Tensor& acc, const Tensor& g) {
  if (!g.defined()) return acc;
  if (!acc.defined()) return g;
  return add(acc, g);
}

// The core loop shared by backward() and grad().
//   roots/root_grads: where to start
//   capture: for grad(), the (node, output) pairs whose incoming gradient is returned; when
//            non-empty, AccumulateGrad nodes do not write .grad and only nodes that reach a
//            captured pair run.
//   stop_at_capture: captured nodes are ends: they neither run nor free their saved tensors, and
//            nothing past them is visited (checkpoint.hpp's recompute: the captured nodes belong
//            to the outer graph, whose own backward runs them).
inline void run_backward(const std::vector<Edge>& roots, const std::vector<Tensor>& root_grads,
                         bool retain_graph, bool create_graph,
                         std::vector<std::pair<Edge, Tensor*>>& capture, const char* api,
                         bool stop_at_capture = false) {
  const bool grad_api = !capture.empty();
  std::unordered_set<Node*, NodeHash> stops;
  if (stop_at_capture)
    for (auto& c : capture) stops.insert(c.first.fn.get());
  // 1. Collect the graph reachable from the roots.
  std::unordered_map<Node*, std::vector<Node*>, NodeHash> children;  // node -> next nodes
  std::vector<Node*> order;
  {
    std::unordered_set<Node*, NodeHash> seen;
    std::vector<Node*> stack;
    for (const Edge& e : roots)
      if (e.valid() && seen.insert(e.fn.get()).second) stack.push_back(e.fn.get());
    while (!stack.empty()) {
      Node* n = stack.back();
      stack.pop_back();
      order.push_back(n);
      auto& ch = children[n];
      if (stops.count(n)) continue;
      for (const Edge& e : n->next_edges) {
        if (!e.valid()) continue;
        ch.push_back(e.fn.get());
        if (seen.insert(e.fn.get()).second) stack.push_back(e.fn.get());
      }
    }
  }
  // 2. For grad(): keep only nodes from which a captured node is reachable.
  std::unordered_set<Node*, NodeHash> needed;
  if (grad_api) {
    std::unordered_set<Node*, NodeHash> targets;
    for (auto& c : capture) targets.insert(c.first.fn.get());
    // Reverse topological marking: iterate until fixed point (graphs here are small DAGs).
    std::unordered_map<Node*, int, NodeHash> memo;  // 0 unknown, 1 yes, 2 no
    std::vector<std::pair<Node*, size_t>> st;
    for (Node* start : order) {
      if (memo[start]) continue;
      st.push_back({start, 0});
      while (!st.empty()) {
        auto& [n, i] = st.back();
        auto& ch = children[n];
        if (i < ch.size()) {
          Node* c = ch[i++];
          if (!memo[c]) st.push_back({c, 0});
          continue;
        }
        bool reach = targets.count(n) > 0;
        for (Node* c : ch) reach = reach || memo[c] == 1;
        memo[n] = reach ? 1 : 2;
        st.pop_back();
      }
    }
    for (auto& [n, m] : memo)
      if (m == 1) needed.insert(n);
  }
  auto is_needed = [&](Node* n) { return !grad_api || needed.count(n) > 0; };

  // 3. Dependencies: how many needed consumers feed each needed node.
  std::unordered_map<Node*, int, NodeHash> deps;
  for (Node* n : order) {
    if (!is_needed(n)) continue;
    for (Node* c : children[n])
      if (is_needed(c)) ++deps[c];
  }
  // 4. Seed the input buffers with the root gradients.
  std::unordered_map<Node*, std::vector<Tensor>, NodeHash> buffers;
  auto buffer_for = [&](Node* n) -> std::vector<Tensor>& {
    auto& b = buffers[n];
    if (b.size() < n->outputs.size()) b.resize(n->outputs.size());
    return b;
  };
  for (size_t i = 0; i < roots.size(); ++i) {
    if (!roots[i].valid() || !is_needed(roots[i].fn.get())) continue;
    auto& b = buffer_for(roots[i].fn.get());
    b[roots[i].input_nr] = accumulate(b[roots[i].input_nr], root_grads[i]);
  }
  auto cmp = [](Node* a, Node* b) { return a->sequence_nr < b->sequence_nr; };
  std::priority_queue<Node*, std::vector<Node*>, decltype(cmp)> ready(cmp);
  {
    std::unordered_set<Node*, NodeHash> pushed;
    for (const Edge& e : roots)
      if (e.valid() && is_needed(e.fn.get()) && deps[e.fn.get()] == 0 &&
          pushed.insert(e.fn.get()).second)
        ready.push(e.fn.get());
  }
  GradModeGuard mode(create_graph);
  AutocastOffGuard no_autocast;  // backward ops run in the dtypes their forward saw
  // 5. Run.
  while (!ready.empty()) {
    Node* n = ready.top();
    ready.pop();
    std::vector<Tensor> grads = std::move(buffer_for(n));
    buffers.erase(n);
    for (auto& [e, dst] : capture)
      if (e.fn.get() == n && grads.size() > e.input_nr) *dst = accumulate(*dst, grads[e.input_nr]);
    if (stops.count(n)) continue;
    for (auto& [nr, weak] : n->retained_outputs)
      if (auto impl = weak.lock(); impl && nr < grads.size() && grads[nr].defined()) {
        Tensor g = create_graph ? grads[nr] : grads[nr].detach();
        impl->grad = impl->grad.defined() ? add(impl->grad, g) : g.clone();
      }
    if (auto* acc = dynamic_cast<AccumulateGrad*>(n)) {
      if (!grad_api && !grads.empty() && grads[0].defined()) {
        TensorImpl* v = acc->variable.get();
        GRAFT_ASSERT(grads[0].shape() == v->shape);
        if (!v->grad.defined()) {
          v->grad = create_graph ? grads[0] : grads[0].detach().clone();
        } else if (create_graph) {
          v->grad = add(v->grad, grads[0]);
        } else {
          NoGradGuard ng;
          v->grad.add_(grads[0]);
        }
      }
      continue;
    }
    bool any = false;
    for (auto& g : grads) any = any || g.defined();
    bool feeds_needed = false;  // in grad(), a captured node may have nothing needed below it
    for (const Edge& e : n->next_edges) feeds_needed = feeds_needed || (e.valid() && is_needed(e.fn.get()));
    std::vector<Tensor> outs;
    if (any && feeds_needed) {
      // Fill missing output gradients with zeros so each node sees one tensor per output.
      for (size_t i = 0; i < grads.size(); ++i)
        if (!grads[i].defined() && is_floating(n->outputs[i].dtype))
          grads[i] = zeros(n->outputs[i].shape, n->outputs[i].dtype, n->outputs[i].device);
      outs = n->apply(grads);
      GRAFT_CHECK(outs.size() == n->next_edges.size(), api, n->name(), " returned ", outs.size(),
                  " gradients for ", n->next_edges.size(), " inputs");
    }
    if (!retain_graph) n->release_saved();
    for (size_t i = 0; i < n->next_edges.size(); ++i) {
      const Edge& e = n->next_edges[i];
      if (!e.valid() || !is_needed(e.fn.get())) continue;
      if (i < outs.size() && outs[i].defined()) {
        const OutputMeta& m = e.fn->outputs[e.input_nr];
        GRAFT_CHECK(outs[i].shape() == m.shape, api, n->name(), " returned a gradient of shape ",
                    outs[i].shape(), " for input ", i, " of shape ", m.shape);
        auto& b = buffer_for(e.fn.get());
        b[e.input_nr] = accumulate(b[e.input_nr], outs[i]);
      }
      if (--deps[e.fn.get()] == 0) ready.push(e.fn.get());
    }
  }
}

inline std::vector<Tensor> default_grads(const std::vector<Tensor>& outputs,
                                         const std::vector<Tensor>& grad_outputs, const char* api) {
  GRAFT_CHECK(grad_outputs.empty() || grad_outputs.size() == outputs.size(), api, "got ",
              grad_outputs.size(), " grad_outputs for ", outputs.size(), " outputs");
  std::vector<Tensor> g(outputs.size());
  for (size_t i = 0; i < outputs.size(); ++i) {
    const Tensor& o = outputs[i];
    GRAFT_CHECK(o.defined(), api, "output ", i, " is undefined");
    GRAFT_CHECK(o.requires_grad(), api, "output ", i,
                " does not require grad and has no grad_fn (was it computed under NoGradGuard, "
                "or from tensors that do not require grad?)");
    if (i < grad_outputs.size() && grad_outputs[i].defined()) {
      GRAFT_CHECK(grad_outputs[i].shape() == o.shape(), api, "grad_outputs[", i, "] has shape ",
                  grad_outputs[i].shape(), ", expected ", o.shape());
      g[i] = grad_outputs[i];
    } else {
      GRAFT_CHECK(o.numel() == 1, api,
                  "a gradient can be created implicitly only for one-element outputs; output ", i,
                  " has shape ", o.shape(), " (pass grad_outputs)");
      g[i] = ones(o.shape(), o.dtype(), o.device());
    }
  }
  return g;
}

}  // namespace detail_engine

// Accumulates d(sum_i <outputs[i], grad_outputs[i]>)/d(leaf) into leaf.grad for every leaf that
// requires grad. Frees the graph unless retain_graph.
inline void backward(const std::vector<Tensor>& outputs, const std::vector<Tensor>& grad_outputs = {},
                     bool retain_graph = false, bool create_graph = false) {
  auto g = detail_engine::default_grads(outputs, grad_outputs, "backward");
  std::vector<Edge> roots;
  for (const Tensor& o : outputs) roots.push_back(gradient_edge(o));
  std::vector<std::pair<Edge, Tensor*>> none;
  detail_engine::run_backward(roots, g, retain_graph || create_graph, create_graph, none, "backward");
}

// Returns d(sum_i <outputs[i], grad_outputs[i]>)/d(inputs[j]) for each j, leaving every .grad
// untouched. An input the outputs do not depend on throws unless allow_unused (then undefined).
inline std::vector<Tensor> grad(const std::vector<Tensor>& outputs, const std::vector<Tensor>& inputs,
                                const std::vector<Tensor>& grad_outputs = {}, bool retain_graph = false,
                                bool create_graph = false, bool allow_unused = false) {
  auto g = detail_engine::default_grads(outputs, grad_outputs, "grad");
  GRAFT_CHECK(!inputs.empty(), "grad", "no inputs given");
  std::vector<Tensor> result(inputs.size());
  std::vector<std::pair<Edge, Tensor*>> capture;
  for (size_t j = 0; j < inputs.size(); ++j) {
    GRAFT_CHECK(inputs[j].defined() && inputs[j].requires_grad(), "grad", "input ", j,
                " does not require grad");
    capture.push_back({gradient_edge(inputs[j]), &result[j]});
  }
  std::vector<Edge> roots;
  for (const Tensor& o : outputs) roots.push_back(gradient_edge(o));
  detail_engine::run_backward(roots, g, retain_graph || create_graph, create_graph, capture, "grad");
  for (size_t j = 0; j < inputs.size(); ++j) {
    GRAFT_CHECK(result[j].defined() || allow_unused, "grad", "input ", j,
                " was not used in the graph of the outputs (pass allow_unused=true)");
    if (result[j].defined() && !create_graph) result[j] = result[j].detach();
  }
  return result;
}

}  // namespace graft::autograd

namespace graft {
inline void Tensor::backward(const Tensor& g, bool retain_graph, bool create_graph) const {
  autograd::backward({*this}, g.defined() ? std::vector<Tensor>{g} : std::vector<Tensor>{},
                     retain_graph, create_graph);
}
}  // namespace graft
