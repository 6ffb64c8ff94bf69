// tests/model_keys.hpp - the check every model family's parity tests share: a module's state_dict keys,
// in order, and their shapes equal a "keys_<model>" golden case (written by the generators' keys_case:
// one int64 1-D tensor per key, holding its shape).
#pragma once
#include <string>
#include <vector>

#include "golden.hpp"
#include "graft/nn.hpp"
#include "harness.hpp"

namespace graft_test {

inline void require_same_keys(const graft::nn::StateDict& sd, const GoldenCase& c) {
  std::vector<std::string> ours, theirs;
  for (const auto& [k, t] : sd) ours.push_back(k);
  for (const auto& [k, t] : c.tensors) theirs.push_back(k);
  REQUIRE(ours == theirs);
  for (size_t i = 0; i < sd.size(); ++i) {
    const std::vector<double> dims = c.tensors[i].second.to_vector();
    const std::vector<int64_t> expected(dims.begin(), dims.end());
    const std::vector<int64_t> actual(sd[i].second.shape().begin(), sd[i].second.shape().end());
    INFO("key " << sd[i].first);
    REQUIRE(actual == expected);
  }
}

}  // namespace graft_test
