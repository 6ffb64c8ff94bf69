// Host-side checks of the vendor-library selection (graft/core/cuda_libs.hpp: GRAFT_CUDA_LIBS and
// set_cuda_libs) and of vendor.cuh's layout math (kernels/graft/kernels/cuda/vendor_plan.hpp: which
// strided operands cuBLAS can read, and how). Plain C++, no GPU; the CUDA program's
// tests/cuda/test_cuda_vendor.cpp runs the libraries themselves.
#include <catch2/catch.hpp>
#include <cstdlib>
#include <string>
#include <vector>

#include "graft/core/cuda_libs.hpp"
#include "graft/kernels/cuda/vendor_plan.hpp"

using namespace graft;
namespace vp = graft::kernels::cuda::vendor_plan;

namespace {

// Resets the selection to "GRAFT_CUDA_LIBS not read yet" with the variable set to `value` (null:
// unset), and puts the previous state back after.
struct EnvSelection {
  explicit EnvSelection(const char* value) {
    const char* old = std::getenv("GRAFT_CUDA_LIBS");
    had_old = old != nullptr;
    if (had_old) old_value = old;
    saved = detail::cuda_libs_state().selected.load();
    if (value)
      setenv("GRAFT_CUDA_LIBS", value, 1);
    else
      unsetenv("GRAFT_CUDA_LIBS");
    detail::cuda_libs_state().selected.store(-1);
  }
  ~EnvSelection() {
    if (had_old)
      setenv("GRAFT_CUDA_LIBS", old_value.c_str(), 1);
    else
      unsetenv("GRAFT_CUDA_LIBS");
    detail::cuda_libs_state().selected.store(saved);
  }
  bool had_old = false;
  std::string old_value;
  int saved = -1;
};

std::string error_of(void (*f)()) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

}  // namespace

TEST_CASE("GRAFT_CUDA_LIBS: a comma list read once; unset or empty selects Graft's own kernels", "[cuda_host]") {
  {
    const EnvSelection env(nullptr);
    CHECK(cuda_libs().empty());
  }
  {
    const EnvSelection env("");
    CHECK(cuda_libs().empty());
  }
  {
    const EnvSelection env(" cudnn , ,cublas ");
    CHECK(cuda_libs() == std::vector<std::string>{"cublas", "cudnn"});
    CHECK(cuda_lib_selected(CudaLib::Cublas));
    CHECK(cuda_lib_selected(CudaLib::Cudnn));
    setenv("GRAFT_CUDA_LIBS", "", 1);  // read once: a later change is not seen
    CHECK(cuda_libs().size() == 2);
  }
  {
    const EnvSelection env("cublas");
    set_cuda_libs({});  // the API overrides the variable
    CHECK(cuda_libs().empty());
  }
  {
    const EnvSelection env("cublas,cuBLAS");
    const std::string e = error_of([] { (void)cuda_libs(); });
    CHECK(e.find("GRAFT_CUDA_LIBS") != std::string::npos);
    CHECK(e.find("\"cuBLAS\"") != std::string::npos);
    set_cuda_libs({"cublas"});  // a bad variable is replaced by the API
    CHECK(cuda_libs() == std::vector<std::string>{"cublas"});
  }
}

TEST_CASE("set_cuda_libs: known names only; a library the backend lacks throws naming it", "[cuda_host]") {
  const EnvSelection env(nullptr);
  set_cuda_libs({"cublas"});
  CHECK(cuda_libs() == std::vector<std::string>{"cublas"});
  const std::string e = error_of([] { set_cuda_libs({"cudnn", "rocblas"}); });
  CHECK(e.find("set_cuda_libs") != std::string::npos);
  CHECK(e.find("\"rocblas\"") != std::string::npos);
  CHECK(cuda_libs() == std::vector<std::string>{"cublas"});  // unchanged
  set_cuda_libs({});
  CHECK(cuda_libs().empty());

  // As a backend built without cuDNN records at registration.
  auto& missing = detail::cuda_libs_state().missing;
  const unsigned saved_missing = missing.load();
  detail::mark_cuda_lib_missing(CudaLib::Cudnn);
  CHECK_FALSE(cuda_lib_available(CudaLib::Cudnn));
  CHECK(cuda_lib_available(CudaLib::Cublas));
  const std::string m = error_of([] { set_cuda_libs({"cudnn"}); });
  CHECK(m.find("no cudnn") != std::string::npos);
  CHECK(cuda_libs().empty());
  missing.store(saved_missing);
}

TEST_CASE("vendor_plan::cublas_operand: which strided matrices cuBLAS reads, and how", "[cuda_host]") {
  vp::CublasOperand o;
  // Row-major [5, 7]: R^T is column-major with ld 7, no transpose.
  REQUIRE(vp::cublas_operand(5, 7, 7, 1, &o));
  CHECK_FALSE(o.transposed);
  CHECK(o.ld == 7);
  // A row-major slice with a wider row: ld is the row stride.
  REQUIRE(vp::cublas_operand(5, 7, 10, 1, &o));
  CHECK(o.ld == 10);
  // A transposed view (column-major storage [5, 7], ld 5): op T.
  REQUIRE(vp::cublas_operand(5, 7, 1, 5, &o));
  CHECK(o.transposed);
  CHECK(o.ld == 5);
  // Size-1 dims: any stride there.
  REQUIRE(vp::cublas_operand(1, 7, 123, 1, &o));
  CHECK_FALSE(o.transposed);
  CHECK(o.ld == 7);
  REQUIRE(vp::cublas_operand(5, 1, 3, 99, &o));
  CHECK_FALSE(o.transposed);
  CHECK(o.ld == 3);
  REQUIRE(vp::cublas_operand(5, 1, 1, 0, &o));  // [5, 1] column with unit rows: ld 1 >= 1 cols
  CHECK(o.ld == 1);
  REQUIRE(vp::cublas_operand(1, 1, 0, 0, &o));
  CHECK(o.ld == 1);
  // No unit stride, overlapping rows (ld < cols), and broadcast rows: not for cuBLAS.
  CHECK_FALSE(vp::cublas_operand(5, 7, 14, 2, &o));
  CHECK_FALSE(vp::cublas_operand(5, 7, 3, 1, &o));
  CHECK_FALSE(vp::cublas_operand(5, 7, 0, 1, &o));
  CHECK_FALSE(vp::cublas_operand(5, 7, 1, 0, &o));
}

TEST_CASE("vendor_plan::single_batch_stride: batch dims that collapse to one stride", "[cuda_host]") {
  int64_t s = -1;
  REQUIRE(vp::single_batch_stride(Shape{}, Shape{}, &s));
  CHECK(s == 0);
  REQUIRE(vp::single_batch_stride(Shape{4}, Shape{35}, &s));
  CHECK(s == 35);
  REQUIRE(vp::single_batch_stride(Shape{2, 3}, Shape{3 * 35, 35}, &s));  // contiguous batches
  CHECK(s == 35);
  REQUIRE(vp::single_batch_stride(Shape{2, 3}, Shape{0, 0}, &s));  // broadcast over both
  CHECK(s == 0);
  REQUIRE(vp::single_batch_stride(Shape{2, 1, 3}, Shape{3 * 35, 999, 35}, &s));  // size-1 dims ignored
  CHECK(s == 35);
  REQUIRE(vp::single_batch_stride(Shape{1, 1}, Shape{7, 9}, &s));
  CHECK(s == 0);
  CHECK_FALSE(vp::single_batch_stride(Shape{2, 3}, Shape{0, 35}, &s));   // broadcast outer only
  CHECK_FALSE(vp::single_batch_stride(Shape{2, 3}, Shape{35, 0}, &s));   // broadcast inner only
  CHECK_FALSE(vp::single_batch_stride(Shape{2, 3}, Shape{35, 70}, &s));  // permuted batch dims
}
