// The host-side half of the CUDA reduction and indexing kernels (kernels/graft/kernels/cuda/
// reduce_plan.hpp, index_plan.hpp), checked here without a GPU: the launch plans, and the kernels'
// index math and merge orders replayed on the CPU against the CPU reference ops. The replays follow
// the kernels step by step (which thread reads which element, the shuffle-down tree, the chunk
// pass), so a wrong index, a chunk that drops or repeats elements, or a merge that depends on the
// grouping fails here; the device code itself is checked against the CPU by tests/cuda/
// test_cuda_reduce_index.cpp on a GPU.
#include <array>
#include <cstring>
#include <vector>

#include "graft/kernels/cuda/index_plan.hpp"
#include "graft/kernels/cuda/reduce_plan.hpp"
#include "harness.hpp"

using namespace graft;
using namespace graft::kernels::cuda;

namespace {

// __shfl_down_sync's tree over 32 lanes (a lane whose source is past lane 31 keeps its own value),
// as warp_merge does it; the result is lane 0's.
template <class S, class Merge>
S replay_warp_merge(std::array<S, 32> s, Merge merge) {
  for (int off = 16; off > 0; off /= 2) {
    std::array<S, 32> t = s;
    for (int l = 0; l < 32; ++l) t[size_t(l)] = merge(s[size_t(l)], s[size_t(l + off < 32 ? l + off : l)]);
    s = t;
  }
  return s[0];
}

// One row reduced as run_row_reduce's kernels do for plan p: take(state, k) adds element k.
template <class S, class Take, class Merge>
S replay_row(const RowReducePlan& p, int64_t len, S identity, Take take, Merge merge) {
  if (p.mode == RowReduceMode::ThreadPerRow) {
    S s = identity;
    for (int64_t k = 0; k < len; ++k) take(s, k);
    return s;
  }
  if (p.mode == RowReduceMode::WarpPerRow) {
    std::array<S, 32> lanes;
    lanes.fill(identity);
    for (int l = 0; l < 32; ++l)
      for (int64_t k = l; k < len; k += 32) take(lanes[size_t(l)], k);
    return replay_warp_merge(lanes, merge);
  }
  // Blocks: each chunk by a block of kRowReduceBlock threads (block_merge), then merge_chunks.
  std::vector<S> partial;
  for (int c = 0; c < p.chunks; ++c) {
    const int64_t begin = chunk_begin(len, p.chunks, c), end = chunk_end(len, p.chunks, c);
    std::vector<S> threads(kRowReduceBlock, identity);
    for (int t = 0; t < kRowReduceBlock; ++t)
      for (int64_t k = begin + t; k < end; k += kRowReduceBlock) take(threads[size_t(t)], k);
    std::array<S, 32> warp_results;
    warp_results.fill(identity);
    for (int w = 0; w < kRowReduceBlock / 32; ++w) {
      std::array<S, 32> lanes;
      for (int l = 0; l < 32; ++l) lanes[size_t(l)] = threads[size_t(w * 32 + l)];
      warp_results[size_t(w)] = replay_warp_merge(lanes, merge);
    }
    partial.push_back(replay_warp_merge(warp_results, merge));
  }
  if (p.chunks == 1) return partial[0];
  std::array<S, 32> lanes;
  lanes.fill(identity);
  for (int l = 0; l < 32; ++l)
    for (int c = l; c < p.chunks; c += 32) lanes[size_t(l)] = merge(lanes[size_t(l)], partial[size_t(c)]);
  return replay_warp_merge(lanes, merge);
}

// Values with many ties, both zeros and (where asked) NaNs: the cases the merge rule must get right.
Tensor tie_heavy(const Shape& s, uint64_t seed, bool with_nan, DType dt = DType::Float64) {
  Generator g(seed);
  const std::vector<double> pool = {-1.0, 0.0, -0.0, 2.0, 2.0, -3.0, std::nan("")};
  std::vector<double> v(size_t(s.numel()));
  const Tensor pick = randint(0, with_nan ? 7 : 6, s, DType::Int64, g);
  const std::vector<double> p = pick.to_vector();
  for (size_t i = 0; i < v.size(); ++i) v[i] = pool[size_t(p[i])];
  return from_vector(v, s, dt);
}

template <class T>
bool same_bits(T a, T b) {
  return std::memcmp(&a, &b, sizeof(T)) == 0;
}

// max / min over the middle dim of [outer, n, inner] as the kernels merge, against the reference.
template <class T>
void check_extreme_replay(int64_t outer, int64_t n, int64_t inner, bool with_nan, uint64_t seed, RowReduceMode mode) {
  const Tensor x = tie_heavy({outer, n, inner}, seed, with_nan, dtype_v<T>);
  const RowLayout l{outer * inner, n, inner};
  const RowReducePlan p = plan_row_reduce(l);
  INFO("outer " << outer << " n " << n << " inner " << inner);
  REQUIRE(p.mode == mode);
  for (bool is_max : {true, false}) {
    Tensor values = empty({outer, inner}, dtype_v<T>), indices = empty({outer, inner}, DType::Int64);
    kernels::cpu::max_dim_forward_reference(values, indices, x, outer, n, inner, is_max);
    const T* px = x.data<T>();
    const auto merge = [is_max](ExtremeState<T> a, ExtremeState<T> b) { return merge_extreme(a, b, is_max); };
    bool all_same = true;
    for (int64_t r = 0; r < l.rows && all_same; ++r) {
      const T* row = px + l.start(r);
      const ExtremeState<T> s = replay_row(
          p, n, ExtremeState<T>{T(0), -1},
          [&](ExtremeState<T>& st, int64_t k) { st = merge(st, ExtremeState<T>{row[k * inner], k}); }, merge);
      all_same = s.k == indices.data<int64_t>()[r] && same_bits(s.v, values.data<T>()[r]);
    }
    CHECK(all_same);
  }
}

}  // namespace

TEST_CASE("CUDA row-reduction plan: modes, grids within limits, chunks that partition a row", "[cuda-host]") {
  CHECK(plan_row_reduce({100000, 64, 1}).mode == RowReduceMode::ThreadPerRow);
  CHECK(plan_row_reduce({1, 0, 1}).mode == RowReduceMode::ThreadPerRow);  // var over zero elements
  CHECK(plan_row_reduce({40 * 256, 1000, 256}).mode == RowReduceMode::ThreadPerRow);  // columns, coalesced
  CHECK(plan_row_reduce({4096, 65, 1}).mode == RowReduceMode::WarpPerRow);
  CHECK(plan_row_reduce({1024, 8192, 1}).mode == RowReduceMode::WarpPerRow);
  CHECK(plan_row_reduce({1023, 100, 1}).mode == RowReduceMode::Blocks);
  CHECK(plan_row_reduce({1024, 8193, 1}).mode == RowReduceMode::Blocks);
  // Chunks: one when a row is short, up to 256 for one long row, never shorter than 2048 elements.
  CHECK(plan_row_reduce({7, 5000, 1}).chunks == 2);
  CHECK(plan_row_reduce({600, 5000, 1}).chunks == 1);
  CHECK(plan_row_reduce({1, int64_t(1) << 30, 1}).chunks == 256);
  CHECK(plan_row_reduce({1, 3000, 1}).chunks == 1);
  for (const RowLayout l : {RowLayout{int64_t(1) << 40, 2, 1}, RowLayout{int64_t(1) << 33, 100, 1},
                            RowLayout{int64_t(1) << 20, 100000, 1}, RowLayout{1, int64_t(1) << 40, 1}}) {
    const RowReducePlan p = plan_row_reduce(l);
    CHECK(p.grid_x >= 1);
    CHECK(p.grid_x <= kMaxGridX);
    CHECK(p.grid_y >= 1);
    CHECK(p.grid_y <= kMaxGridY);
  }
  // [chunk_begin, chunk_end) over c = 0 .. chunks-1 covers [0, len) once, in order.
  bool partitions = true;
  for (int64_t len : {0, 1, 2047, 4096, 4097, 100003, 600000})
    for (int chunks : {1, 2, 3, 7, 100, 256}) {
      int64_t next = 0;
      for (int c = 0; c < chunks; ++c) {
        partitions = partitions && chunk_begin(len, chunks, c) == next && chunk_end(len, chunks, c) >= next;
        next = chunk_end(len, chunks, c);
      }
      partitions = partitions && next == len;
    }
  CHECK(partitions);
  // Row r of [outer, len, inner] starts at (o, 0, i).
  const RowLayout l{3 * 5, 4, 5};
  CHECK(l.start(0) == 0);
  CHECK(l.start(4) == 4);
  CHECK(l.start(5) == 20);
  CHECK(l.start(14) == 2 * 20 + 4);
}

TEST_CASE("CUDA max / min merge: any grouping gives the CPU scan's value bits and index", "[cuda-host]") {
  // merge_extreme directly: NaN wins, then the first index; 0.0 and -0.0 tie.
  const auto m = [](double a, int64_t ka, double b, int64_t kb) {
    return merge_extreme(ExtremeState<double>{a, ka}, ExtremeState<double>{b, kb}, true);
  };
  CHECK(m(1.0, 3, 2.0, 5).k == 5);
  CHECK(m(2.0, 5, 1.0, 3).k == 5);
  CHECK(m(2.0, 7, 2.0, 5).k == 5);
  CHECK(m(std::nan(""), 9, 5.0, 1).k == 9);
  CHECK(m(std::nan(""), 9, std::nan(""), 4).k == 4);
  CHECK(m(-0.0, 2, 0.0, 1).k == 1);
  CHECK(m(1.0, -1, -5.0, 8).k == 8);  // "no element yet" gives way
  // Every mode of the row-reduction kernels, replayed.
  check_extreme_replay<double>(37, 50, 1, true, 1, RowReduceMode::ThreadPerRow);
  check_extreme_replay<float>(3, 20, 64, true, 2, RowReduceMode::ThreadPerRow);
  check_extreme_replay<double>(2000, 333, 1, true, 3, RowReduceMode::WarpPerRow);
  check_extreme_replay<float>(5, 700, 3, false, 4, RowReduceMode::Blocks);            // one chunk
  check_extreme_replay<double>(3, 10000, 1, true, 5, RowReduceMode::Blocks);          // 4 chunks
  check_extreme_replay<float>(1, 600000, 1, false, 6, RowReduceMode::Blocks);         // 256 chunks
  check_extreme_replay<double>(1, 300001, 2, true, 7, RowReduceMode::Blocks);         // strided rows
}

TEST_CASE("CUDA var replay: two passes over the kernels' grouping match the reference", "[cuda-host]") {
  for (const auto& [M, K] : std::vector<std::pair<int64_t, int64_t>>{{33, 17}, {2000, 129}, {3, 10000}, {1, 300000}}) {
    Generator g(uint64_t(M * 7 + K));
    const Tensor x = (randn({M, K}, DType::Float64, g) * 3.0 + 10.0).contiguous();
    Tensor ref = empty({M}, DType::Float64);
    kernels::cpu::var_forward_reference(ref, x, M, K, 1);
    const RowReducePlan p = plan_row_reduce({M, K, 1});
    const auto add = [](double a, double b) { return a + b; };
    std::vector<double> out(static_cast<size_t>(M));
    for (int64_t r = 0; r < M; ++r) {
      const double* row = x.data<double>() + r * K;
      const double mean = replay_row(p, K, 0.0, [&](double& s, int64_t k) { s += row[k]; }, add) / double(K);
      const double ss = replay_row(p, K, 0.0, [&](double& s, int64_t k) { s += (row[k] - mean) * (row[k] - mean); }, add);
      out[size_t(r)] = ss / double(K - 1);
    }
    INFO("M " << M << " K " << K);
    GRAFT_REQUIRE_CLOSE(from_vector(out, {M}, DType::Float64), ref, graft_test::kTolF64);
  }
}

TEST_CASE("CUDA amax_backward replay: tie counts in every mode", "[cuda-host]") {
  for (const auto& [M, K] : std::vector<std::pair<int64_t, int64_t>>{{40, 9}, {1500, 100}, {2, 9000}}) {
    const Tensor x = tie_heavy({M, K}, uint64_t(M + K), true);
    Tensor best = empty({M}, DType::Float64), dx = empty({M, K}, DType::Float64);
    kernels::cpu::amax_forward_reference(best, x, M, K, true);
    Generator g(5);
    const Tensor dout = randn({M}, DType::Float64, g);
    kernels::cpu::amax_backward_reference(dx, dout, x, best, M, K);
    const RowReducePlan p = plan_row_reduce({M, K, 1});
    bool same = true;
    for (int64_t r = 0; r < M; ++r) {
      const double* row = x.data<double>() + r * K;
      const double b = best.data<double>()[r];
      const auto tie = [b](double v) { return v == b || (v != v && b != b); };
      const long long count = replay_row(
          p, K, 0LL, [&](long long& s, int64_t k) { s += tie(row[k]) ? 1 : 0; },
          [](long long a, long long c) { return a + c; });
      const double share = dout.data<double>()[r] / double(count);
      for (int64_t k = 0; k < K; ++k) same = same && same_bits(tie(row[k]) ? share : 0.0, dx.data<double>()[r * K + k]);
    }
    INFO("M " << M << " K " << K);
    CHECK(same);
  }
}

TEST_CASE("CUDA copy units: the widest of 16..1 bytes dividing sizes and addresses", "[cuda-host]") {
  CHECK(widest_unit({64, 0x1000}) == 16);
  CHECK(widest_unit({12, 0x1000}) == 4);
  CHECK(widest_unit({64, 0x1004}) == 4);
  CHECK(widest_unit({6, 0x1000}) == 2);
  CHECK(widest_unit({8, 0x1001}) == 1);
  CHECK(widest_unit({0, 0}) == 16);  // an empty row constrains nothing
  CHECK(narrow_unit(8, 24) == 8);
  CHECK(narrow_unit(16, 24) == 8);
}

TEST_CASE("CUDA index_select and cat index math against the ops, in every unit", "[cuda-host]") {
  Generator g(17);
  const Tensor x = randint(-1000, 1000, {3, 7, 6}, DType::Int32, g);  // rows of 6 int32 = 24 bytes
  const Tensor index = from_vector(std::vector<int64_t>{6, 0, 0, 3, 6, 1, 2, 5, 4}, {9}, DType::Int64);
  const Tensor ref = index_select(x, 1, index);
  const int64_t row_bytes = 6 * 4;
  for (int unit : {1, 2, 4, 8}) {
    if (row_bytes % unit != 0) continue;
    const SelectRows s{3, 7, 9, row_bytes / unit};
    std::vector<uint8_t> out(size_t(3 * 9 * row_bytes));
    const auto* src = static_cast<const uint8_t*>(x.data_ptr());
    for (int64_t e = 0; e < s.outer * s.m * s.row; ++e)
      std::memcpy(&out[size_t(e * unit)], src + s.source(e, index.data<int64_t>()[s.index_position(e)]) * unit,
                  size_t(unit));
    INFO("unit " << unit);
    CHECK(std::memcmp(out.data(), ref.data_ptr(), out.size()) == 0);
  }
  // cat along dim 1 of [2, n_t, 3] float64 inputs (one of them empty), in 8-byte units and in bytes.
  const std::vector<int64_t> ns = {2, 0, 5, 1};
  std::vector<Tensor> parts;
  for (int64_t n : ns) parts.push_back(randn({2, n, 3}, DType::Float64, g));
  const Tensor joined = cat(parts, 1);
  for (int unit : {1, 8}) {
    const int64_t out_row = 8 * 3 * 8 / unit;
    std::vector<uint8_t> out(size_t(joined.numel() * 8), 0xAB);
    int64_t start = 0;
    for (size_t t = 0; t < parts.size(); ++t) {
      const int64_t len = ns[t] * 3 * 8 / unit;
      const auto* src = static_cast<const uint8_t*>(parts[t].data_ptr());
      for (int64_t e = 0; e < 2 * len; ++e)
        std::memcpy(&out[size_t(cat_destination(e, len, start, out_row) * unit)], src + e * unit, size_t(unit));
      start += len;
    }
    INFO("unit " << unit);
    CHECK(std::memcmp(out.data(), joined.data_ptr(), out.size()) == 0);
  }
}

TEST_CASE("CUDA gather geometry: forward offsets and the column-ordered scatter_add", "[cuda-host]") {
  Generator g(23);
  const Tensor x = randn({4, 5, 6}, DType::Float64, g);
  for (int dim = 0; dim < 3; ++dim) {
    const Shape ishape = dim == 0 ? Shape{7, 3, 6} : dim == 1 ? Shape{2, 9, 4} : Shape{4, 5, 11};
    const Tensor index = randint(0, x.size(dim), ishape, DType::Int64, g);  // duplicates galore
    const Tensor ref = gather(x, dim, index);
    GatherGeometry geo;
    geo.rank = 3;
    geo.dim = dim;
    const Shape xs = contiguous_strides(x.shape());
    for (int d = 0; d < 3; ++d) {
      geo.size[d] = ishape[d];
      geo.x_stride[d] = xs[d];
    }
    const int64_t* idx = index.data<int64_t>();
    std::vector<double> out(size_t(index.numel()));
    for (int64_t i = 0; i < index.numel(); ++i) out[size_t(i)] = x.data<double>()[geo.x_base(i) + idx[i] * geo.dim_stride_x()];
    INFO("dim " << dim);
    CHECK(from_vector(out, ishape, DType::Float64).to_vector() == ref.to_vector());
    // The backward: every column walked in order gives the CPU kernel's bits.
    const Tensor dout = randn(ishape, DType::Float64, g);
    Tensor dx_ref = zeros(x.shape(), DType::Float64);
    kernels::cpu::gather_backward(dx_ref, dout, index, dim);
    std::vector<double> dx(size_t(x.numel()), 0.0);
    int64_t visited = 0;
    for (int64_t col = 0; col < geo.columns(); ++col) {
      int64_t io = 0, xo = 0;
      geo.column_start(col, &io, &xo);
      for (int64_t j = 0; j < geo.column_len(); ++j, ++visited) {
        const int64_t p = io + j * geo.dim_stride_index();
        dx[size_t(xo + idx[p] * geo.dim_stride_x())] += dout.data<double>()[p];
      }
    }
    CHECK(visited == index.numel());
    CHECK(from_vector(dx, x.shape(), DType::Float64).to_vector() == dx_ref.to_vector());
  }
}

TEST_CASE("CUDA pad geometry against the op: padding, cropping, empty rows", "[cuda-host]") {
  Generator g(29);
  const Tensor x = randn({2, 3, 4}, DType::Float64, g);
  for (const std::vector<int64_t>& pads : std::vector<std::vector<int64_t>>{
           {1, 2}, {0, 0, 2, 1}, {-1, 2, 1, -2}, {3, -4}, {1, 1, 1, 1, 1, 1}, {-2, -2, 0, 0, -1, 0}}) {
    const Tensor ref = pad(x, pads, 7.5);
    PadGeometry geo;
    geo.rank = 3;
    for (int d = 0; d < 3; ++d) {
      geo.out_size[d] = ref.size(d);
      geo.x_size[d] = x.size(d);
    }
    for (size_t k = 0; k < pads.size() / 2; ++k) geo.before[2 - k] = pads[2 * k];
    std::vector<double> out(size_t(ref.numel()));
    for (int64_t o = 0; o < ref.numel(); ++o) {
      const int64_t s = geo.source(o);
      out[size_t(o)] = s < 0 ? 7.5 : x.data<double>()[s];
    }
    INFO("pads " << pads.size());
    CHECK(from_vector(out, ref.shape(), DType::Float64).to_vector() == ref.to_vector());
  }
}
