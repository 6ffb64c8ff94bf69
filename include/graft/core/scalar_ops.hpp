// graft/core/scalar_ops.hpp - the elementwise op codes and their scalar math, shared by the op
// headers (include/graft/ops/elementwise.hpp), the fast CPU kernels (kernels/graft/kernels/cpu/) and
// the CUDA kernels (kernels/graft/kernels/cuda/), so that kernels include core, never ops.
//
//   BinaryOp, CompareOp, UnaryOp (+ unary_name)     which elementwise op
//   kernels::binary_scalar(op, a, b)                a (op) b
//   kernels::unary_scalar(op, x, p0, p1)            f(x); p0, p1 are PowScalar's exponent and Clamp's bounds
//   kernels::unary_derivative(op, x, y, p0, p1)     f'(x) given y = f(x)
// All GRAFT_HOST_DEVICE: the same definitions compile for the host and, under nvcc, the device.
#pragma once
#include <cmath>

#include "graft/core/dtype.hpp"

namespace graft {

enum class BinaryOp { Add, Sub, Mul, Div, Pow, Maximum, Minimum };
enum class CompareOp { Eq, Ne, Lt, Le, Gt, Ge };
enum class UnaryOp {
  Neg, Abs, Exp, Log, Sqrt, Rsqrt, Tanh, Sigmoid, Relu, Relu6, GeluErf, GeluTanh, Silu, Hardswish,
  PowScalar,  // x^p0
  Clamp,      // clamp(x, p0, p1)
};

inline const char* unary_name(UnaryOp op) {
  switch (op) {
    case UnaryOp::Neg: return "neg";
    case UnaryOp::Abs: return "abs";
    case UnaryOp::Exp: return "exp";
    case UnaryOp::Log: return "log";
    case UnaryOp::Sqrt: return "sqrt";
    case UnaryOp::Rsqrt: return "rsqrt";
    case UnaryOp::Tanh: return "tanh";
    case UnaryOp::Sigmoid: return "sigmoid";
    case UnaryOp::Relu: return "relu";
    case UnaryOp::Relu6: return "relu6";
    case UnaryOp::GeluErf: return "gelu";
    case UnaryOp::GeluTanh: return "gelu_tanh";
    case UnaryOp::Silu: return "silu";
    case UnaryOp::Hardswish: return "hardswish";
    case UnaryOp::PowScalar: return "pow_scalar";
    case UnaryOp::Clamp: return "clamp";
  }
  return "unary";
}

namespace kernels {

using std::erf, std::exp, std::log, std::pow, std::sqrt, std::tanh;

// Scalar math shared with the CUDA kernels (GRAFT_HOST_DEVICE): unqualified exp/log/... resolve to
// <cmath> on the host and to CUDA's device overloads under nvcc.
template <class T>
GRAFT_HOST_DEVICE inline T clamp_scalar(T x, T lo, T hi) {
  return x < lo ? lo : (x > hi ? hi : x);
}

template <class T>
GRAFT_HOST_DEVICE inline T binary_scalar(BinaryOp op, T a, T b) {
  switch (op) {
    case BinaryOp::Add: return a + b;
    case BinaryOp::Sub: return a - b;
    case BinaryOp::Mul: return a * b;
    case BinaryOp::Div: return a / b;
    case BinaryOp::Pow: return pow(a, b);
    case BinaryOp::Maximum: return (a != a || a > b) ? a : b;  // NaN propagates
    case BinaryOp::Minimum: return (a != a || a < b) ? a : b;
  }
  return a;
}

constexpr double kSqrt2 = 1.4142135623730951;
constexpr double kSqrt2OverPi = 0.7978845608028654;
constexpr double kInvSqrt2Pi = 0.3989422804014327;

template <class T>
GRAFT_HOST_DEVICE inline T unary_scalar(UnaryOp op, T x, T p0, T p1) {
  switch (op) {
    case UnaryOp::Neg: return -x;
    case UnaryOp::Abs: return (x < T(0) ? -x : (x == T(0) ? T(0) : x));
    case UnaryOp::Exp: return exp(x);
    case UnaryOp::Log: return log(x);
    case UnaryOp::Sqrt: return sqrt(x);
    case UnaryOp::Rsqrt: return T(1) / sqrt(x);
    case UnaryOp::Tanh: return tanh(x);
    case UnaryOp::Sigmoid: return T(1) / (T(1) + exp(-x));
    case UnaryOp::Relu: return x > T(0) ? x : (x != x ? x : T(0));
    case UnaryOp::Relu6: return x != x ? x : clamp_scalar(x, T(0), T(6));
    case UnaryOp::GeluErf: return T(0.5) * x * (T(1) + erf(x / T(kSqrt2)));
    case UnaryOp::GeluTanh:
      return T(0.5) * x * (T(1) + tanh(T(kSqrt2OverPi) * (x + T(0.044715) * x * x * x)));
    case UnaryOp::Silu: return x / (T(1) + exp(-x));
    case UnaryOp::Hardswish: return x * clamp_scalar(x + T(3), T(0), T(6)) / T(6);
    case UnaryOp::PowScalar: return pow(x, p0);
    case UnaryOp::Clamp: return x != x ? x : clamp_scalar(x, p0, p1);
  }
  return x;
}

// f'(x), given x and y = f(x). Conventions at kinks follow PyTorch (relu'(0) = 0, clamp passes
// the gradient on the closed interval, relu6 on the open one).
template <class T>
GRAFT_HOST_DEVICE inline T unary_derivative(UnaryOp op, T x, T y, T p0, T p1) {
  switch (op) {
    case UnaryOp::Neg: return T(-1);
    case UnaryOp::Abs: return x > T(0) ? T(1) : (x < T(0) ? T(-1) : T(0));
    case UnaryOp::Exp: return y;
    case UnaryOp::Log: return T(1) / x;
    case UnaryOp::Sqrt: return T(0.5) / y;
    case UnaryOp::Rsqrt: return T(-0.5) * y * y * y;
    case UnaryOp::Tanh: return T(1) - y * y;
    case UnaryOp::Sigmoid: return y * (T(1) - y);
    case UnaryOp::Relu: return x > T(0) ? T(1) : T(0);
    case UnaryOp::Relu6: return (x > T(0) && x < T(6)) ? T(1) : T(0);
    case UnaryOp::GeluErf:
      return T(0.5) * (T(1) + erf(x / T(kSqrt2))) + x * T(kInvSqrt2Pi) * exp(T(-0.5) * x * x);
    case UnaryOp::GeluTanh: {
      const T inner = T(kSqrt2OverPi) * (x + T(0.044715) * x * x * x);
      const T t = tanh(inner);
      return T(0.5) * (T(1) + t) +
             T(0.5) * x * (T(1) - t * t) * T(kSqrt2OverPi) * (T(1) + T(3 * 0.044715) * x * x);
    }
    case UnaryOp::Silu: {
      const T s = T(1) / (T(1) + exp(-x));
      return s * (T(1) + x * (T(1) - s));
    }
    case UnaryOp::Hardswish: return x < T(-3) ? T(0) : (x <= T(3) ? x / T(3) + T(0.5) : T(1));
    case UnaryOp::PowScalar: return p0 == T(0) ? T(0) : p0 * pow(x, p0 - T(1));
    case UnaryOp::Clamp: return (x >= p0 && x <= p1) ? T(1) : T(0);
  }
  return T(0);
}

}  // namespace kernels

}  // namespace graft
