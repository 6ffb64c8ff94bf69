// graft/autograd/checkpoint.hpp - gradient checkpointing (activation recomputation), as
// torch.utils.checkpoint.checkpoint(fn, *inputs, use_reentrant=False): the forward keeps only fn's
// inputs; the backward runs fn again with grad on and backpropagates through that second graph.
// Memory for activations drops from every op's saved tensors to the inputs of each checkpointed
// piece (plus one piece's activations during its backward), for one more forward of fn.
//
//   Tensor y = graft::checkpoint([&](const Tensor& x) { return block->forward(x); }, x);
//   std::vector<Tensor> outs = graft::checkpoint(
//       [&](const std::vector<Tensor>& in) { return std::vector<Tensor>{f(in[0], in[1]), g(in[1])}; },
//       {a, b});
//   loss(y).backward();   // x.grad and every parameter block uses get their gradients, as without it
//
// Contract (torch's non-reentrant semantics):
//   - fn must compute the same thing twice: the default generator's state is saved before the
//     forward and restored for the recompute (preserve_rng_state, on by default), so dropout and
//     drop path draw the same masks; the generator is put back afterwards, so the backward does not
//     shift the random stream. Autocast is recomputed as the forward had it (each pass with its
//     own weight-cast cache).
//   - The parameters (and any other tensors that require grad) fn reaches without taking them as
//     inputs are found in the forward, and become edges of the checkpoint's node: backward()
//     accumulates into their .grad and autograd::grad() can ask for them, exactly as without the
//     checkpoint. To find them the forward runs fn with grad on and drops that graph as soon as
//     fn returns, so only fn's inputs (and its outputs) outlive the call.
//   - Under NoGradGuard, or when nothing fn uses requires grad, it is a plain call of fn. An output
//     that depends on nothing requiring grad comes back without history, as in torch.
//   - All outputs share one node (torch's keep their own): an input reached only through outputs
//     that get no gradient receives zeros rather than none.
//   - Nested checkpoints work (the inner one recomputes inside the outer one's recompute);
//     backward(retain_graph = true) can run the backward again (it recomputes again);
//     create_graph (double backward) goes through the recomputed graph. A second backward without
//     retain_graph throws, like any node whose saved tensors were freed, and an input modified in
//     place after the call throws at backward (the saved-tensor version check).
//   - fn runs twice, so do its side effects: a BatchNorm in training mode updates its running
//     statistics again in the recompute (as in torch); checkpoint pieces without them.
//   - The recompute must reach the same tensors that require grad as the forward; if fn changed
//     (another parameter, a random branch without preserve_rng_state) the backward throws.
//   - Throws a graft::Error for no inputs, an undefined input, or an fn returning no tensor or an
//     undefined one.
#pragma once
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "graft/autograd/engine.hpp"
#include "graft/autograd/node.hpp"
#include "graft/core/autocast.hpp"
#include "graft/core/random.hpp"

namespace graft {

using CheckpointFn = std::function<std::vector<Tensor>(const std::vector<Tensor>&)>;

namespace autograd::detail_checkpoint {

struct EdgeKey {
  const Node* fn;
  uint32_t input_nr;
  bool operator==(const EdgeKey& o) const { return fn == o.fn && input_nr == o.input_nr; }
};
struct EdgeKeyHash {
  size_t operator()(const EdgeKey& k) const { return std::hash<const Node*>()(k.fn) * 31 + k.input_nr; }
};

// Where fn's graph ends: the edges from nodes made during fn (sequence number >= first_seq) to
// leaves' accumulators and to nodes made before fn, each once. The forward's become the checkpoint
// node's edges; the recompute's must be the same set.
inline std::vector<Edge> graph_boundary(const std::vector<Tensor>& outputs, uint64_t first_seq) {
  std::vector<Edge> boundary;
  std::unordered_set<EdgeKey, EdgeKeyHash> seen_edges;
  std::unordered_set<const Node*> seen_nodes;
  std::vector<Node*> stack;
  auto visit = [&](const Edge& e) {
    if (!e.valid()) return;
    Node* n = e.fn.get();
    const bool outside = dynamic_cast<AccumulateGrad*>(n) != nullptr || n->sequence_nr < first_seq;
    if (outside) {
      if (seen_edges.insert({n, e.input_nr}).second) boundary.push_back(e);
    } else if (seen_nodes.insert(n).second) {
      stack.push_back(n);
    }
  };
  for (const Tensor& o : outputs)
    if (o.requires_grad()) visit(gradient_edge(o));
  while (!stack.empty()) {
    Node* n = stack.back();
    stack.pop_back();
    for (const Edge& e : n->next_edges) visit(e);
  }
  return boundary;
}

struct AutocastState {
  bool enabled[kNumDeviceTypes];
  DType dtype[kNumDeviceTypes];
  static AutocastState current() {
    AutocastState s;
    for (int t = 0; t < kNumDeviceTypes; ++t) {
      s.enabled[t] = autocast_enabled(DeviceType(t));
      s.dtype[t] = autocast_dtype(DeviceType(t));
    }
    return s;
  }
};

// Runs fn's two passes each with an empty autocast weight cache (the thread's cache comes back after):
// a cast cached before the pass would enter fn's graph as an outside node in one pass and as fn's own
// cast in the other, and the two graphs would end at different places.
class FreshAutocastCache {
 public:
  FreshAutocastCache() { saved_.swap(autocast_detail::state().cache); }
  ~FreshAutocastCache() { saved_.swap(autocast_detail::state().cache); }
  FreshAutocastCache(const FreshAutocastCache&) = delete;
  FreshAutocastCache& operator=(const FreshAutocastCache&) = delete;

 private:
  std::unordered_map<const TensorImpl*, autocast_detail::CastEntry> saved_;
};

// fn's inputs as the recompute (and the forward) sees them: fresh leaves, so fn's graph stops
// there; the ones whose original requires grad require grad.
inline std::vector<Tensor> detached_inputs(const std::vector<Tensor>& inputs) {
  std::vector<Tensor> d;
  d.reserve(inputs.size());
  for (const Tensor& t : inputs) {
    Tensor x = t.detach();
    if (t.requires_grad()) x.set_requires_grad(true);
    d.push_back(x);
  }
  return d;
}

inline std::vector<Tensor> call_checked(const CheckpointFn& fn, const std::vector<Tensor>& inputs) {
  std::vector<Tensor> outs = fn(inputs);
  GRAFT_CHECK(!outs.empty(), "checkpoint", "fn returned no tensors (it must return at least one output)");
  for (size_t i = 0; i < outs.size(); ++i)
    GRAFT_CHECK(outs[i].defined(), "checkpoint", "fn returned an undefined tensor as output ", i);
  return outs;
}

class CheckpointBackward final : public Node {
 public:
  std::string name() const override { return "CheckpointBackward"; }

  // grads[j]: the gradient of output j. Returns the gradients of the inputs, then of the extra edges.
  std::vector<Tensor> apply(std::vector<Tensor>& grads) override {
    std::vector<Tensor> inputs;
    for (const SavedTensor& s : saved_inputs) inputs.push_back(s.unpack(this));
    const bool create_graph = GradMode::enabled();  // the engine runs nodes in grad mode = create_graph

    std::vector<Tensor> x = detached_inputs(inputs);
    std::vector<Edge> input_edges(x.size());
    for (size_t i = 0; i < x.size(); ++i)
      if (x[i].requires_grad()) input_edges[i] = gradient_edge(x[i]);
    std::vector<Tensor> outs;
    uint64_t first_seq = 0;
    {
      std::optional<Generator::State> rng_now;
      if (preserve_rng_state) {
        rng_now = default_generator().state();
        default_generator().set_state(rng_state);
      }
      try {
        GradModeGuard grad_on(true);
        FreshAutocastCache fresh_cache;
        // The engine turned autocast off; the recompute runs under the forward's autocast.
        std::optional<AutocastGuard> amp[kNumDeviceTypes];
        for (int t = 0; t < kNumDeviceTypes; ++t)
          if (autocast.enabled[t]) amp[t].emplace(autocast.dtype[t], DeviceType(t), true);
        first_seq = next_sequence_nr();
        outs = call_checked(fn, x);
      } catch (...) {
        if (rng_now) default_generator().set_state(*rng_now);
        throw;
      }
      if (rng_now) default_generator().set_state(*rng_now);
    }
    GRAFT_CHECK(outs.size() == outputs.size(), "checkpoint", "the recompute returned ", outs.size(),
                " outputs, the forward ", outputs.size(), " (fn must compute the same thing twice)");

    // The recompute must end where the forward's graph ended.
    std::unordered_map<const Node*, size_t> input_of;  // detached input's accumulator -> input index
    for (size_t i = 0; i < input_edges.size(); ++i)
      if (input_edges[i].valid()) input_of[input_edges[i].fn.get()] = i;
    std::unordered_set<EdgeKey, EdgeKeyHash> forward_extras;
    for (size_t k = saved_inputs.size(); k < next_edges.size(); ++k)
      forward_extras.insert({next_edges[k].fn.get(), next_edges[k].input_nr});
    size_t extras_seen = 0;
    for (const Edge& e : graph_boundary(outs, first_seq)) {
      if (input_of.count(e.fn.get())) continue;
      GRAFT_CHECK(forward_extras.count({e.fn.get(), e.input_nr}) > 0, "checkpoint",
                  "the recompute reached a tensor requiring grad (through ", e.fn->name(),
                  ") that the forward did not (fn must compute the same thing twice: same parameters, same "
                  "branches, and, for random ops, preserve_rng_state)");
      ++extras_seen;
    }
    GRAFT_CHECK(extras_seen == extra_edges, "checkpoint", "the recompute reached ", extras_seen,
                " tensors requiring grad besides the inputs, the forward ", extra_edges,
                " (fn must compute the same thing twice)");

    std::vector<Edge> roots;
    std::vector<Tensor> root_grads;
    for (size_t j = 0; j < outs.size(); ++j) {
      if (!connected[j]) continue;
      GRAFT_CHECK(outs[j].requires_grad(), "checkpoint", "output ", j,
                  " required grad in the forward but not in the recompute");
      GRAFT_CHECK(outs[j].shape() == outputs[j].shape, "checkpoint", "output ", j, " has shape ", outs[j].shape(),
                  " in the recompute, ", outputs[j].shape, " in the forward");
      roots.push_back(gradient_edge(outs[j]));
      root_grads.push_back(grads[j]);
    }
    std::vector<Tensor> result(next_edges.size());
    std::vector<std::pair<Edge, Tensor*>> capture;
    for (size_t i = 0; i < input_edges.size(); ++i)
      if (input_edges[i].valid() && next_edges[i].valid()) capture.push_back({input_edges[i], &result[i]});
    for (size_t k = saved_inputs.size(); k < next_edges.size(); ++k) capture.push_back({next_edges[k], &result[k]});
    if (capture.empty()) return result;
    // The captured nodes are the outer graph's: the outer engine runs them, this run stops there.
    detail_engine::run_backward(roots, root_grads, create_graph, create_graph, capture, "checkpoint",
                                /*stop_at_capture=*/true);
    return result;
  }
  void release_saved() override {
    for (auto& s : saved_inputs) s.release();
  }

  CheckpointFn fn;
  std::vector<SavedTensor> saved_inputs;
  size_t extra_edges = 0;           // next_edges = one per input, then these
  std::vector<bool> connected;      // per output: required grad in the forward, has this node as grad_fn
  bool preserve_rng_state = true;
  Generator::State rng_state{};
  AutocastState autocast{};
};

}  // namespace autograd::detail_checkpoint

// outputs = fn(inputs), keeping only the inputs for backward (see the top of this header).
inline std::vector<Tensor> checkpoint(const CheckpointFn& fn, const std::vector<Tensor>& inputs,
                                      bool preserve_rng_state = true) {
  using namespace autograd;
  using namespace autograd::detail_checkpoint;
  GRAFT_CHECK(static_cast<bool>(fn), "checkpoint", "fn is empty");
  GRAFT_CHECK(!inputs.empty(), "checkpoint", "no inputs given (pass the tensors fn reads as its inputs)");
  for (size_t i = 0; i < inputs.size(); ++i)
    GRAFT_CHECK(inputs[i].defined(), "checkpoint", "input ", i, " is undefined");
  if (!GradMode::enabled()) return call_checked(fn, inputs);

  auto node = std::make_shared<CheckpointBackward>();
  node->preserve_rng_state = preserve_rng_state;
  if (preserve_rng_state) node->rng_state = default_generator().state();
  node->autocast = AutocastState::current();

  // Run fn once with grad on to learn where its graph ends (the inputs and whatever else requiring
  // grad it reaches), then drop that graph: its saved activations go with it.
  std::vector<Tensor> x = detached_inputs(inputs);
  std::vector<Edge> input_edges(x.size());
  for (size_t i = 0; i < x.size(); ++i)
    if (x[i].requires_grad()) input_edges[i] = gradient_edge(x[i]);
  const uint64_t first_seq = next_sequence_nr();
  std::vector<Tensor> outs;
  {
    FreshAutocastCache fresh_cache;
    outs = call_checked(fn, x);
  }
  const std::vector<Edge> boundary = graph_boundary(outs, first_seq);
  if (boundary.empty()) return outs;  // nothing requires grad: a plain call

  std::unordered_map<const Node*, size_t> input_of;
  for (size_t i = 0; i < input_edges.size(); ++i)
    if (input_edges[i].valid()) input_of[input_edges[i].fn.get()] = i;
  for (const Tensor& t : inputs) node->next_edges.push_back(gradient_edge(t));
  for (const Edge& e : boundary) {
    if (input_of.count(e.fn.get())) continue;
    node->next_edges.push_back(e);
    ++node->extra_edges;
  }
  for (const Tensor& t : inputs) node->saved_inputs.emplace_back(t);
  node->fn = fn;

  std::vector<Tensor> result;
  for (uint32_t j = 0; j < outs.size(); ++j) {
    const Tensor& o = outs[j];
    node->outputs.push_back({o.shape(), o.dtype(), o.device()});
    const bool connect_output = o.requires_grad() && is_floating(o.dtype());
    node->connected.push_back(connect_output);
    Tensor r = o.detach();  // a fresh handle without fn's graph; that graph dies with `outs`
    if (connect_output) {
      r.impl()->grad_fn = node;
      r.impl()->output_nr = j;
    }
    result.push_back(r);
  }
  return result;
}

// The one-tensor form: y = fn(x).
inline Tensor checkpoint(const std::function<Tensor(const Tensor&)>& fn, const Tensor& input,
                         bool preserve_rng_state = true) {
  GRAFT_CHECK(static_cast<bool>(fn), "checkpoint", "fn is empty");
  return checkpoint([fn](const std::vector<Tensor>& in) { return std::vector<Tensor>{fn(in[0])}; },
                    std::vector<Tensor>{input}, preserve_rng_state)[0];
}

}  // namespace graft
