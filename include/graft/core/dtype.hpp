// graft/core/dtype.hpp - run-time element types, the 16-bit float types, and the dispatch macro.
//
// Tensors carry their dtype at run time (checkpoints decide it); kernels get a typed pointer or
// TensorView<T, Rank> after one switch on the dtype. bfloat16 and float16 ("reduced" floats) compute
// in float32: matmul, linear, conv2d and attention take them in their kernels, every other op widens
// its operands to float32, runs the float32 kernel and rounds the result (ops/widen.hpp).
#pragma once
#include <cstdint>
#include <cstring>
#include <string>
#include <type_traits>

#include "graft/core/error.hpp"

// Functions shared by CPU code and CUDA kernels (the scalar math of elementwise ops) are marked
// GRAFT_HOST_DEVICE, so both backends compute with the same definition.
#if defined(__CUDACC__)
#define GRAFT_HOST_DEVICE __host__ __device__
#else
#define GRAFT_HOST_DEVICE
#endif

namespace graft {

enum class DType : uint8_t { Float32, Float64, BFloat16, Float16, Int32, Int64, Bool };

// bfloat16: the top 16 bits of an IEEE float32; conversion rounds to nearest even (as PyTorch).
struct BFloat16 {
  uint16_t bits = 0;
  BFloat16() = default;
  BFloat16(float f) {  // NOLINT(google-explicit-constructor): behaves like a float
    uint32_t u;
    std::memcpy(&u, &f, 4);
    if ((u & 0x7fffffffu) > 0x7f800000u) {
      bits = 0x7fc0;  // quiet NaN
    } else {
      u += 0x7fffu + ((u >> 16) & 1u);
      bits = static_cast<uint16_t>(u >> 16);
    }
  }
  operator float() const {  // NOLINT(google-explicit-constructor)
    uint32_t u = static_cast<uint32_t>(bits) << 16;
    float f;
    std::memcpy(&f, &u, 4);
    return f;
  }
};

// float16: IEEE 754 binary16 with subnormals; float -> half rounds to nearest even.
struct Float16 {
  uint16_t bits = 0;
  Float16() = default;
  Float16(float f) {  // NOLINT(google-explicit-constructor)
    uint32_t u;
    std::memcpy(&u, &f, 4);
    const uint32_t sign = (u >> 16) & 0x8000u;
    const uint32_t abs = u & 0x7fffffffu;
    if (abs >= 0x7f800000u) {  // inf or NaN
      bits = static_cast<uint16_t>(sign | 0x7c00u | (abs > 0x7f800000u ? 0x200u : 0u));
      return;
    }
    if (abs >= 0x477ff000u) {  // rounds to >= 65520: overflow to inf
      bits = static_cast<uint16_t>(sign | 0x7c00u);
      return;
    }
    if (abs < 0x38800000u) {  // below the smallest normal half (2^-14): subnormal or zero
      float af;
      std::memcpy(&af, &abs, 4);
      // subnormal half = round(af / 2^-24); adding 0.5f*... via float arithmetic rounds to even
      const float scaled = af * 16777216.0f;  // 2^24
      uint32_t m = static_cast<uint32_t>(scaled);
      const float rem = scaled - static_cast<float>(m);
      if (rem > 0.5f || (rem == 0.5f && (m & 1u))) ++m;
      bits = static_cast<uint16_t>(sign | m);
      return;
    }
    // normal: rebias exponent 127 -> 15, keep 10 mantissa bits, round to nearest even
    uint32_t v = abs - 0x38000000u;  // exponent - 112
    v += 0xfffu + ((v >> 13) & 1u);
    bits = static_cast<uint16_t>(sign | (v >> 13));
  }
  operator float() const {  // NOLINT(google-explicit-constructor)
    const uint32_t sign = (static_cast<uint32_t>(bits) & 0x8000u) << 16;
    const uint32_t exp = (bits >> 10) & 0x1fu;
    const uint32_t man = bits & 0x3ffu;
    uint32_t u;
    if (exp == 0) {
      float f = static_cast<float>(man) * (1.0f / 16777216.0f);
      std::memcpy(&u, &f, 4);
      u |= sign;
    } else if (exp == 31) {
      u = sign | 0x7f800000u | (man << 13);
    } else {
      u = sign | ((exp + 112u) << 23) | (man << 13);
    }
    float f;
    std::memcpy(&f, &u, 4);
    return f;
  }
};

inline constexpr size_t dtype_size(DType t) {
  switch (t) {
    case DType::Float32: return 4;
    case DType::Float64: return 8;
    case DType::BFloat16: return 2;
    case DType::Float16: return 2;
    case DType::Int32: return 4;
    case DType::Int64: return 8;
    case DType::Bool: return 1;
  }
  return 0;
}

inline const char* dtype_name(DType t) {
  switch (t) {
    case DType::Float32: return "float32";
    case DType::Float64: return "float64";
    case DType::BFloat16: return "bfloat16";
    case DType::Float16: return "float16";
    case DType::Int32: return "int32";
    case DType::Int64: return "int64";
    case DType::Bool: return "bool";
  }
  return "unknown";
}

inline bool is_floating(DType t) {
  return t == DType::Float32 || t == DType::Float64 || t == DType::BFloat16 || t == DType::Float16;
}

// bfloat16 or float16: the types ops compute in float32 and round on store.
inline bool is_reduced_float(DType t) { return t == DType::BFloat16 || t == DType::Float16; }

// The C++ type of each dtype, and back.
template <class T> struct dtype_of;
template <> struct dtype_of<float> { static constexpr DType value = DType::Float32; };
template <> struct dtype_of<double> { static constexpr DType value = DType::Float64; };
template <> struct dtype_of<BFloat16> { static constexpr DType value = DType::BFloat16; };
template <> struct dtype_of<Float16> { static constexpr DType value = DType::Float16; };
template <> struct dtype_of<int32_t> { static constexpr DType value = DType::Int32; };
template <> struct dtype_of<int64_t> { static constexpr DType value = DType::Int64; };
template <> struct dtype_of<bool> { static constexpr DType value = DType::Bool; };
template <class T> inline constexpr DType dtype_v = dtype_of<T>::value;

// Type promotion for binary ops on two dtypes (PyTorch's rules for tensor-tensor operands).
inline DType promote(DType a, DType b) {
  if (a == b) return a;
  auto rank = [](DType t) {
    switch (t) {
      case DType::Bool: return 0;
      case DType::Int32: return 1;
      case DType::Int64: return 2;
      case DType::Float16: return 3;
      case DType::BFloat16: return 3;
      case DType::Float32: return 4;
      case DType::Float64: return 5;
    }
    return 0;
  };
  if ((a == DType::Float16 && b == DType::BFloat16) || (a == DType::BFloat16 && b == DType::Float16))
    return DType::Float32;
  return rank(a) >= rank(b) ? a : b;
}

// One case of the dispatch macros below: T is the C++ type of DType::ENUM.
#define GRAFT_DTYPE_CASE(ENUM, TYPE, T, ...) \
  case ::graft::DType::ENUM: {               \
    using T = TYPE;                          \
    return __VA_ARGS__();                    \
  }
#define GRAFT_DTYPE_UNSUPPORTED(DT, OP, EXPECTED)                                                     \
  throw ::graft::Error(::graft::detail::concat(OP, ": dtype ", ::graft::dtype_name(DT), " not supported " \
                                               "(expected " EXPECTED ")"))

// GRAFT_DISPATCH_FLOAT(dtype, "op", T, body): runs body with T = float or double; any other dtype
// throws "op: dtype X not supported (expected float32 or float64)". The reduced floats reach a kernel
// widened to float32 (ops/autocast.hpp) or through the kernels that take them.
#define GRAFT_DISPATCH_FLOAT(DT, OP, T, ...)                            \
  [&] {                                                                 \
    switch (DT) {                                                       \
      GRAFT_DTYPE_CASE(Float32, float, T, __VA_ARGS__)                  \
      GRAFT_DTYPE_CASE(Float64, double, T, __VA_ARGS__)                 \
      default: GRAFT_DTYPE_UNSUPPORTED(DT, OP, "float32 or float64");   \
    }                                                                   \
  }()

// GRAFT_DISPATCH_FLOATING(dtype, "op", T, body): the four floating dtypes (T = float, double, BFloat16,
// Float16), for loops that only convert (random fills); any other dtype throws.
#define GRAFT_FLOATING_CASES(T, ...)                                \
  GRAFT_DTYPE_CASE(Float32, float, T, __VA_ARGS__)                  \
  GRAFT_DTYPE_CASE(Float64, double, T, __VA_ARGS__)                 \
  GRAFT_DTYPE_CASE(BFloat16, ::graft::BFloat16, T, __VA_ARGS__)     \
  GRAFT_DTYPE_CASE(Float16, ::graft::Float16, T, __VA_ARGS__)
#define GRAFT_DISPATCH_FLOATING(DT, OP, T, ...)                         \
  [&] {                                                                 \
    switch (DT) {                                                       \
      GRAFT_FLOATING_CASES(T, __VA_ARGS__)                              \
      default: GRAFT_DTYPE_UNSUPPORTED(DT, OP, "a floating dtype");     \
    }                                                                   \
  }()

// GRAFT_DISPATCH_ALL(dtype, "op", T, body): every dtype.
#define GRAFT_DISPATCH_ALL(DT, OP, T, ...)                                    \
  [&] {                                                                       \
    switch (DT) {                                                             \
      GRAFT_FLOATING_CASES(T, __VA_ARGS__)                                    \
      GRAFT_DTYPE_CASE(Int32, int32_t, T, __VA_ARGS__)                        \
      GRAFT_DTYPE_CASE(Int64, int64_t, T, __VA_ARGS__)                        \
      GRAFT_DTYPE_CASE(Bool, bool, T, __VA_ARGS__)                            \
    }                                                                         \
    throw ::graft::Error(::graft::detail::concat(OP, ": unknown dtype"));    \
  }()

}  // namespace graft
