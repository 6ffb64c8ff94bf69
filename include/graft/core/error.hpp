// graft/core/error.hpp - the one exception type users catch, and helpers that build its message.
//
// Contract: every error a user can cause (bad shape, dtype, index, file) throws graft::Error whose
// message starts with the op or component name, then says what was expected and what was found.
// Internal invariants use GRAFT_ASSERT, which also throws (so tests can see it) but says "internal".
#pragma once
#include <sstream>
#include <stdexcept>
#include <string>
#include <utility>

namespace graft {

class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& what) : std::runtime_error(what) {}
};

namespace detail {
template <class... Args>
std::string concat(Args&&... args) {
  std::ostringstream os;
  (os << ... << std::forward<Args>(args));
  return os.str();
}
}  // namespace detail

// GRAFT_CHECK(cond, "op", parts...): throws graft::Error("op: parts...") when cond is false.
#define GRAFT_CHECK(cond, op, ...)                                                   \
  do {                                                                               \
    if (!(cond)) throw ::graft::Error(::graft::detail::concat(op, ": ", __VA_ARGS__)); \
  } while (0)

#define GRAFT_ASSERT(cond)                                                                   \
  do {                                                                                       \
    if (!(cond))                                                                             \
      throw ::graft::Error(::graft::detail::concat("internal error: ", #cond, " at ", __FILE__, \
                                                   ":", __LINE__));                          \
  } while (0)

}  // namespace graft
