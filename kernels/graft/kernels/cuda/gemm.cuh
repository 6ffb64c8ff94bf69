// graft/kernels/cuda/gemm.cuh - matrix products on the GPU: the matmul slot and the linear slot
// (a GEMM whose epilogue adds the bias and applies the activation), batched, any strides.
//
//   matmul:  out[*batch, M, N] = a[*batch, M, K] @ b[*batch, K, N]      (ops/matmul.hpp's contract: out
//            contiguous; a and b of out's dtype, expanded to the batch shape (stride 0 on broadcast
//            batch dims), any strides: a transposed view is a stride swap, read in place)
//   linear:  out[rows, F] = act(x[rows, K] weight[F, K]^T + bias[F])   (weight read in place as the
//            transposed b; bias optional; act one of graft/core/activation.hpp)
// Every kernel handles any M, N, K (K = 0 included: the sum is empty, out = act(bias)), reading zeros
// past the edges of a tile and writing only inside the output. Sums are carried in T, in increasing k
// within a thread; they differ from the CPU's only by rounding.
//
// Three kernels, the steps of the SGEMM worklogs (bench/gpu/gemm_bench.cu times each against cuBLAS),
// chosen per problem by gemm_plan::choose_gemm_path (gemm_plan.hpp holds all their index math):
//   gemm_tiled      64 x 64 x 16 block tile, 16 x 16 threads each accumulating 4 x 4 in registers
//                   ("2D blocktiling"). float64, and float32 problems with fewer 128 x 128 tiles than SMs.
//   gemm_warptiled  FP32 SIMT, 128 x 128 x 8 block tile, 8 warps of 64 x 32, each thread 8 x 8 as 2 x 2
//                   blocks of 4 x 4 ("warptiling"); shared memory double buffered: the next k-slice is
//                   fetched into registers while the current one is multiplied.
//   gemm_tf32       float32 with set_float32_matmul_precision("high"): TF32 tensor cores through
//                   mma.sync.m16n8k8 (inline PTX), 128 x 128 x 16 block tile, 8 warps of 64 x 32, each
//                   4 x 4 mma tiles; inputs rounded with cvt.rna.tf32.f32 as they are staged in shared
//                   memory, products exact, sums in float32. Double buffered like gemm_warptiled.
// The two 128 x 128 kernels load a as an (m, k) and b as an (n, k) matrix with one loader: float4
// pieces along whichever of the operand's dims has the unit stride (gemm_plan::tile_vector_position),
// aligned 128-bit loads when gemm_plan::float4_loads_ok, else the same pieces one float at a time.
// Which dim is contiguous is a template parameter of the kernels (4 instances each), so transposed
// operands (linear's weight, the backward's g^T and x^T) keep coalesced loads.
// Output tiles are walked in groups of 8 tile rows (gemm_plan::tile_of_block), a 1-D grid over tiles;
// grid.z strides the batches.
#pragma once
#include <cuda_runtime.h>

#include <atomic>
#include <cstdint>
#include <type_traits>

#include "graft/core/activation.hpp"
#include "graft/core/dtype.hpp"
#include "graft/core/precision.hpp"
#include "graft/core/scalar_ops.hpp"
#include "graft/core/tensor.hpp"
#include "graft/kernels/cuda/common.cuh"
#include "graft/kernels/cuda/gemm_plan.hpp"

namespace graft::kernels::cuda {

namespace gemm_detail {
using namespace gemm_plan;

// out[m, n] = act(sum + bias[n]), bias optional. The activation is the elementwise op's own scalar
// math (graft/core/scalar_ops.hpp), so the fused result equals linear's unfused CUDA path.
template <class T>
struct Epilogue {
  const T* bias = nullptr;  // [N] or null
  Activation act = Activation::None;
};

template <class T>
__device__ inline T finish(const Epilogue<T>& ep, T sum, int64_t n) {
  const T x = ep.bias ? sum + ep.bias[n] : sum;
  switch (ep.act) {
    case Activation::None: return x;
    case Activation::Relu: return unary_scalar<T>(UnaryOp::Relu, x, T(0), T(0));
    case Activation::Relu6: return unary_scalar<T>(UnaryOp::Relu6, x, T(0), T(0));
    case Activation::Silu: return unary_scalar<T>(UnaryOp::Silu, x, T(0), T(0));
    case Activation::GeluTanh: return unary_scalar<T>(UnaryOp::GeluTanh, x, T(0), T(0));
    case Activation::Gelu: return unary_scalar<T>(UnaryOp::GeluErf, x, T(0), T(0));
  }
  return x;
}

// The strides of one operand of gemm_tiled: element (i, j) of batch z is at
// strided_offset(batch, z) + i * rs + j * cs.
struct Operand {
  Strided batch;  // the batch dims' sizes and this operand's strides in them
  int64_t rs, cs;
};

// ---- step "2D blocktiling": 64 x 64 x 16, 4 x 4 per thread (float64 and small float32 problems) ----
constexpr int BM = 64, BN = 64, BK = 16, TM = 4, TN = 4;
constexpr int kThreads = (BM / TM) * (BN / TN);  // 256
static_assert(BM * BK % kThreads == 0 && BK * BN % kThreads == 0, "each thread loads whole slices");

template <class T>
__global__ void __launch_bounds__(kThreads) gemm_tiled(T* __restrict__ out, const T* __restrict__ a, Operand ao,
                                                       const T* __restrict__ b, Operand bo, int64_t M, int64_t N,
                                                       int64_t K, int64_t batches, Epilogue<T> ep) {
  __shared__ T as[BK][BM + 1];  // as[k][m] = a[m0 + m, k0 + k]; +1: no bank conflicts on the transposed store
  __shared__ T bs[BK][BN];      // bs[k][n] = b[k0 + k, n0 + n]
  const int tid = int(threadIdx.x);
  const int tx = tid % (BN / TN), ty = tid / (BN / TN);  // this thread's TM x TN block in the tile
  const TileCoord tile = tile_of_block(blockIdx.x, ceil_div(M, BM), ceil_div(N, BN), kTileGroup);
  const int64_t m0 = tile.tm * BM, n0 = tile.tn * BN;
  for (int64_t z = blockIdx.z; z < batches; z += gridDim.z) {
    const T* az = a + strided_offset(ao.batch, z);
    const T* bz = b + strided_offset(bo.batch, z);
    T acc[TM][TN];
#pragma unroll
    for (int i = 0; i < TM; ++i)
#pragma unroll
      for (int j = 0; j < TN; ++j) acc[i][j] = T(0);
    for (int64_t k0 = 0; k0 < K; k0 += BK) {
      // Stage the slices: consecutive threads take consecutive k of a row of a (contiguous when
      // a_cs = 1) and consecutive n of a row of b (contiguous when b_cs = 1).
#pragma unroll
      for (int e = tid; e < BM * BK; e += kThreads) {
        const int m = e / BK, k = e % BK;
        const int64_t gm = m0 + m, gk = k0 + k;
        as[k][m] = gm < M && gk < K ? az[gm * ao.rs + gk * ao.cs] : T(0);
      }
#pragma unroll
      for (int e = tid; e < BK * BN; e += kThreads) {
        const int k = e / BN, n = e % BN;
        const int64_t gk = k0 + k, gn = n0 + n;
        bs[k][n] = gk < K && gn < N ? bz[gk * bo.rs + gn * bo.cs] : T(0);
      }
      __syncthreads();
#pragma unroll
      for (int k = 0; k < BK; ++k) {
        T af[TM], bf[TN];
#pragma unroll
        for (int i = 0; i < TM; ++i) af[i] = as[k][ty * TM + i];
#pragma unroll
        for (int j = 0; j < TN; ++j) bf[j] = bs[k][tx * TN + j];
#pragma unroll
        for (int i = 0; i < TM; ++i)
#pragma unroll
          for (int j = 0; j < TN; ++j) acc[i][j] = fma(af[i], bf[j], acc[i][j]);
      }
      __syncthreads();  // the next slices overwrite as and bs
    }
    T* oz = out + z * M * N;
#pragma unroll
    for (int i = 0; i < TM; ++i) {
      const int64_t gm = m0 + ty * TM + i;
      if (gm >= M) continue;
#pragma unroll
      for (int j = 0; j < TN; ++j) {
        const int64_t gn = n0 + tx * TN + j;
        if (gn < N) oz[gm * N + gn] = finish(ep, acc[i][j], gn);
      }
    }
  }
}

// ---- the 128 x 128 kernels' operand loader ------------------------------------------------------
// One float32 operand as an (outer, k) matrix: element (o, k) of batch z is at
// p[strided_offset(batch, z) + o * so + k * sk]; o < outer_extent (M for a, N for b).
struct TileOperand {
  const float* p;
  Strided batch;
  int64_t so, sk, outer_extent;
  bool vec4;  // gemm_plan::float4_loads_ok along the contiguous dim
};

// This thread's pieces of a kOuter x kK tile of an operand (kKContig: its k stride is the unit one),
// fetched into registers; piece r sits at gemm_plan::tile_vector_position(kKContig, ..., tid, r).
// start() fixes the tile's outer range (per output tile and batch); fetch(k0) then reads the k-slice
// [k0, k0 + kK), zeros past the edges. Only a pointer and a count per piece stay in registers.
template <int kOuter, int kK, int kBlockThreads, bool kKContig>
struct TileFetch {
  static constexpr int kPieces = kOuter * kK / (4 * kBlockThreads);
  static_assert(kPieces * 4 * kBlockThreads == kOuter * kK, "the threads cover the tile in whole float4 pieces");
  float4 v[kPieces];         // v[r] = elements (o + i, k) or (o, k + i), i = 0..3, of piece r
  const float* base[kPieces];  // element (o, q.k) of piece r at k0 = 0
  int outer_valid[kPieces];  // how many of the piece's outer indices are < outer_extent (0..4; k-contiguous: 0 or 4)

  // pz: the operand's p at this batch; o0: the tile's first outer index.
  __device__ void start(const float* pz, const TileOperand& op, int64_t o0, int tid) {
#pragma unroll
    for (int r = 0; r < kPieces; ++r) {
      const TilePos q = tile_vector_position(kKContig, kOuter, kK, kBlockThreads, tid, r);
      const int64_t go = o0 + q.outer, left = op.outer_extent - go;
      base[r] = pz + go * op.so + q.k * op.sk;
      outer_valid[r] = left <= 0 ? 0 : (kKContig || left >= 4 ? 4 : int(left));
    }
  }
  __device__ void fetch(const TileOperand& op, int64_t k0, int64_t K, int tid) {
#pragma unroll
    for (int r = 0; r < kPieces; ++r) {
      const TilePos q = tile_vector_position(kKContig, kOuter, kK, kBlockThreads, tid, r);
      const int64_t k_left = K - (k0 + q.k);  // how many of the piece's k indices are < K
      const float* p = base[r] + k0 * op.sk;
      if (op.vec4) {  // the extent along the piece is a multiple of 4: a piece is wholly in or wholly out
        v[r] = outer_valid[r] > 0 && k_left > 0 ? __ldg(reinterpret_cast<const float4*>(p))
                                                : make_float4(0.f, 0.f, 0.f, 0.f);
      } else {
        float e[4];
#pragma unroll
        for (int i = 0; i < 4; ++i) {
          const bool inside = kKContig ? outer_valid[r] > 0 && i < k_left : i < outer_valid[r] && k_left > 0;
          e[i] = inside ? __ldg(p + i * (kKContig ? op.sk : op.so)) : 0.f;
        }
        v[r] = make_float4(e[0], e[1], e[2], e[3]);
      }
    }
  }
};

// The launch of every kernel here: one block per output tile (1-D, gemm_plan::tile_of_block), grid.z
// over the batches.
inline dim3 grid_of_tiles(int64_t M, int64_t N, int64_t tile_m, int64_t tile_n, int64_t batches, const char* op) {
  const int64_t tiles = ceil_div(M, tile_m) * ceil_div(N, tile_n);
  GRAFT_CHECK(tiles <= int64_t(0x7fffffff), op, "an output of ", M, " x ", N, " has ", tiles,
              " tiles of ", tile_m, " x ", tile_n, ", more than a grid holds (2^31 - 1)");
  return dim3(unsigned(tiles), 1, unsigned(batches < 65535 ? batches : 65535));
}

// ---- step "warptiling": FP32 SIMT, 128 x 128 x 8, 8 warps of 64 x 32, 8 x 8 per thread ----------
// Shared memory: as[s][k][m] = a[m0 + m, k0 + k] and bs[s][k][n] = b[k0 + k, n0 + n] of stage s (two
// stages, 2 x 2 x 8 x 132 floats = 16.5 KiB); rows padded to 132 floats so the transposed stores of
// k-contiguous pieces hit 32 banks and the float4 reads stay aligned. Thread (tid) owns out rows
// m0 + simt_row(tid, i), columns n0 + simt_col(tid, j), i, j = 0..7 (gemm_plan.hpp).
template <bool kAKContig, bool kBKContig>
__global__ void __launch_bounds__(kWarpTiledThreads, 1)
    gemm_warptiled(float* __restrict__ out, TileOperand a, TileOperand b, int64_t M, int64_t N, int64_t K,
                   int64_t batches, Epilogue<float> ep, bool out_vec4) {
  constexpr int TBM = kWarpTiledBM, TBN = kWarpTiledBN, TBK = kWarpTiledBK, LD = kWarpTiledLd;
  __shared__ __align__(16) float as[2][TBK][LD];
  __shared__ __align__(16) float bs[2][TBK][LD];
  using FetchA = TileFetch<TBM, TBK, kWarpTiledThreads, kAKContig>;
  using FetchB = TileFetch<TBN, TBK, kWarpTiledThreads, kBKContig>;
  const int tid = int(threadIdx.x);
  const TileCoord tile = tile_of_block(blockIdx.x, ceil_div(M, TBM), ceil_div(N, TBN), kTileGroup);
  const int64_t m0 = tile.tm * TBM, n0 = tile.tn * TBN;
  const int row0 = simt_row(tid, 0), col0 = simt_col(tid, 0);  // rows row0 + {0..3, 32..35}, cols col0 + {0..3, 16..19}

  // Stage s of the shared tiles from the fetched pieces: k-contiguous pieces are stored transposed
  // (4 floats down a column of s[k][.]), outer-contiguous ones as one float4.
  auto stage = [&](float (*s)[LD], const auto& f, bool k_contig) {
#pragma unroll
    for (int r = 0; r < std::decay_t<decltype(f)>::kPieces; ++r) {
      const TilePos q = tile_vector_position(k_contig, TBM, TBK, kWarpTiledThreads, tid, r);
      if (k_contig) {
        s[q.k + 0][q.outer] = f.v[r].x;
        s[q.k + 1][q.outer] = f.v[r].y;
        s[q.k + 2][q.outer] = f.v[r].z;
        s[q.k + 3][q.outer] = f.v[r].w;
      } else {
        *reinterpret_cast<float4*>(&s[q.k][q.outer]) = f.v[r];
      }
    }
  };

  for (int64_t z = blockIdx.z; z < batches; z += gridDim.z) {
    const float* az = a.p + strided_offset(a.batch, z);
    const float* bz = b.p + strided_offset(b.batch, z);
    float acc[8][8];  // acc[i][j]: out[m0 + simt_row(tid, i), n0 + simt_col(tid, j)]
#pragma unroll
    for (int i = 0; i < 8; ++i)
#pragma unroll
      for (int j = 0; j < 8; ++j) acc[i][j] = 0.f;
    FetchA fa;
    FetchB fb;
    const int64_t k_tiles = ceil_div(K, TBK);
    fa.start(az, a, m0, tid);
    fb.start(bz, b, n0, tid);
    if (k_tiles > 0) {
      fa.fetch(a, 0, K, tid);
      fb.fetch(b, 0, K, tid);
      stage(as[0], fa, kAKContig);
      stage(bs[0], fb, kBKContig);
      __syncthreads();
    }
    for (int64_t kt = 0; kt < k_tiles; ++kt) {
      const int s = int(kt & 1);
      const bool more = kt + 1 < k_tiles;
      if (more) {  // the next slice into registers while this one is multiplied
        fa.fetch(a, (kt + 1) * TBK, K, tid);
        fb.fetch(b, (kt + 1) * TBK, K, tid);
      }
#pragma unroll
      for (int k = 0; k < TBK; ++k) {
        const float4 a0 = *reinterpret_cast<const float4*>(&as[s][k][row0]);
        const float4 a1 = *reinterpret_cast<const float4*>(&as[s][k][row0 + 32]);
        const float4 b0 = *reinterpret_cast<const float4*>(&bs[s][k][col0]);
        const float4 b1 = *reinterpret_cast<const float4*>(&bs[s][k][col0 + 16]);
        const float af[8] = {a0.x, a0.y, a0.z, a0.w, a1.x, a1.y, a1.z, a1.w};
        const float bf[8] = {b0.x, b0.y, b0.z, b0.w, b1.x, b1.y, b1.z, b1.w};
#pragma unroll
        for (int i = 0; i < 8; ++i)
#pragma unroll
          for (int j = 0; j < 8; ++j) acc[i][j] = fmaf(af[i], bf[j], acc[i][j]);
      }
      // Stage s ^ 1 was last read in iteration kt - 1, before the barrier that ended it.
      if (more) {
        stage(as[s ^ 1], fa, kAKContig);
        stage(bs[s ^ 1], fb, kBKContig);
      }
      __syncthreads();  // stage s ^ 1 written before it is read; stage s read before it is rewritten
    }
    float* oz = out + z * M * N;
#pragma unroll
    for (int i = 0; i < 8; ++i) {
      const int64_t gm = m0 + simt_row(tid, i);
      if (gm >= M) continue;
#pragma unroll
      for (int h = 0; h < 2; ++h) {
        const int64_t gn = n0 + col0 + 16 * h;  // columns gn .. gn + 3 are acc[i][4h .. 4h + 3]
        if (out_vec4 && gn < N) {              // N % 4 == 0: all four are inside
          *reinterpret_cast<float4*>(oz + gm * N + gn) =
              make_float4(finish(ep, acc[i][4 * h], gn), finish(ep, acc[i][4 * h + 1], gn + 1),
                          finish(ep, acc[i][4 * h + 2], gn + 2), finish(ep, acc[i][4 * h + 3], gn + 3));
        } else {
#pragma unroll
          for (int j = 0; j < 4; ++j)
            if (gn + j < N) oz[gm * N + gn + j] = finish(ep, acc[i][4 * h + j], gn + j);
        }
      }
    }
  }
}

// ---- TF32 on the tensor cores: mma.sync.m16n8k8, 128 x 128 x 16, 8 warps of 64 x 32 -------------
// x rounded to TF32 (to nearest, ties away from zero; gemm_plan::round_to_tf32 is its host twin).
__device__ inline uint32_t to_tf32(float x) {
  uint32_t r;
  asm("cvt.rna.tf32.f32 %0, %1;" : "=r"(r) : "f"(x));
  return r;
}

// c += a b for one 16 x 8 x 8 tile held by a warp (fragment layouts: gemm_plan::mma_a_row etc.).
__device__ inline void mma_m16n8k8_tf32(float (&c)[4], const uint32_t (&a)[4], const uint32_t (&b)[2]) {
  asm("mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
      "{%0, %1, %2, %3};"
      : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
}

// Shared memory: as[s] and bs[s] hold stage s of the (m, k) tile of a and the (n, k) tile of b as
// TF32 bit patterns, element (o, k) at gemm_plan::tf32_smem_index(k-contiguous, o, k): the layout
// follows the operand's, so staging is one 16-byte store per piece, and the fragment reads are free of
// bank conflicts either way (2 x 2 x 2560 words = 40 KiB). Warp w computes rows m0 + tf32_warp_row0(w)
// + [0, 64) and columns n0 + tf32_warp_col0(w) + [0, 32) as 4 x 4 mma tiles of 16 x 8; acc[i][j][r]
// is element (mma_c_row(lane, r), mma_c_col(lane, r)) of tile (i, j).
template <bool kAKContig, bool kBKContig>
__global__ void __launch_bounds__(kTf32Threads, 1)
    gemm_tf32(float* __restrict__ out, TileOperand a, TileOperand b, int64_t M, int64_t N, int64_t K, int64_t batches,
              Epilogue<float> ep, bool out_vec2) {
  constexpr int TBM = kTf32BM, TBN = kTf32BN, TBK = kTf32BK;
  __shared__ __align__(16) uint32_t as[2][kTf32TileFloats];
  __shared__ __align__(16) uint32_t bs[2][kTf32TileFloats];
  using FetchA = TileFetch<TBM, TBK, kTf32Threads, kAKContig>;
  using FetchB = TileFetch<TBN, TBK, kTf32Threads, kBKContig>;
  const int tid = int(threadIdx.x), warp = tid / 32, lane = tid % 32;
  const TileCoord tile = tile_of_block(blockIdx.x, ceil_div(M, TBM), ceil_div(N, TBN), kTileGroup);
  const int64_t m0 = tile.tm * TBM, n0 = tile.tn * TBN;
  const int wr0 = tf32_warp_row0(warp), wc0 = tf32_warp_col0(warp);

  // Stage s from the fetched pieces, rounded to TF32: each piece is 4 consecutive words in either layout.
  auto stage = [&](uint32_t* s, const auto& f, bool k_contig) {
#pragma unroll
    for (int r = 0; r < std::decay_t<decltype(f)>::kPieces; ++r) {
      const TilePos q = tile_vector_position(k_contig, TBM, TBK, kTf32Threads, tid, r);
      *reinterpret_cast<uint4*>(s + tf32_smem_index(k_contig, q.outer, q.k)) =
          make_uint4(to_tf32(f.v[r].x), to_tf32(f.v[r].y), to_tf32(f.v[r].z), to_tf32(f.v[r].w));
    }
  };

  for (int64_t z = blockIdx.z; z < batches; z += gridDim.z) {
    const float* az = a.p + strided_offset(a.batch, z);
    const float* bz = b.p + strided_offset(b.batch, z);
    float acc[4][4][4];
#pragma unroll
    for (int i = 0; i < 4; ++i)
#pragma unroll
      for (int j = 0; j < 4; ++j)
#pragma unroll
        for (int r = 0; r < 4; ++r) acc[i][j][r] = 0.f;
    FetchA fa;
    FetchB fb;
    const int64_t k_tiles = ceil_div(K, TBK);
    fa.start(az, a, m0, tid);
    fb.start(bz, b, n0, tid);
    if (k_tiles > 0) {
      fa.fetch(a, 0, K, tid);
      fb.fetch(b, 0, K, tid);
      stage(as[0], fa, kAKContig);
      stage(bs[0], fb, kBKContig);
      __syncthreads();
    }
    for (int64_t kt = 0; kt < k_tiles; ++kt) {
      const int s = int(kt & 1);
      const bool more = kt + 1 < k_tiles;
      if (more) {
        fa.fetch(a, (kt + 1) * TBK, K, tid);
        fb.fetch(b, (kt + 1) * TBK, K, tid);
      }
#pragma unroll
      for (int kk = 0; kk < TBK; kk += 8) {
        uint32_t af[4][4], bf[4][2];  // af[i]: m16 tile i of the warp; bf[j]: n8 tile j
#pragma unroll
        for (int i = 0; i < 4; ++i)
#pragma unroll
          for (int r = 0; r < 4; ++r)
            af[i][r] = as[s][tf32_smem_index(kAKContig, wr0 + 16 * i + mma_a_row(lane, r), kk + mma_a_col(lane, r))];
#pragma unroll
        for (int j = 0; j < 4; ++j)
#pragma unroll
          for (int r = 0; r < 2; ++r)
            bf[j][r] = bs[s][tf32_smem_index(kBKContig, wc0 + 8 * j + mma_b_col(lane), kk + mma_b_row(lane, r))];
#pragma unroll
        for (int i = 0; i < 4; ++i)
#pragma unroll
          for (int j = 0; j < 4; ++j) mma_m16n8k8_tf32(acc[i][j], af[i], bf[j]);
      }
      if (more) {
        stage(as[s ^ 1], fa, kAKContig);
        stage(bs[s ^ 1], fb, kBKContig);
      }
      __syncthreads();
    }
    float* oz = out + z * M * N;
#pragma unroll
    for (int i = 0; i < 4; ++i)
#pragma unroll
      for (int h = 0; h < 2; ++h) {  // rows group and group + 8 of the m16 tile
        const int64_t gm = m0 + wr0 + 16 * i + mma_c_row(lane, 2 * h);
        if (gm >= M) continue;
#pragma unroll
        for (int j = 0; j < 4; ++j) {
          const int64_t gn = n0 + wc0 + 8 * j + mma_c_col(lane, 0);  // columns gn, gn + 1: acc[i][j][2h], [2h + 1]
          if (out_vec2 && gn < N) {                                 // N even: both inside
            *reinterpret_cast<float2*>(oz + gm * N + gn) =
                make_float2(finish(ep, acc[i][j][2 * h], gn), finish(ep, acc[i][j][2 * h + 1], gn + 1));
          } else {
            if (gn < N) oz[gm * N + gn] = finish(ep, acc[i][j][2 * h], gn);
            if (gn + 1 < N) oz[gm * N + gn + 1] = finish(ep, acc[i][j][2 * h + 1], gn + 1);
          }
        }
      }
  }
}

// ---- host side: one entry for both slots ---------------------------------------------------------
inline int sm_count(int device) {
  static std::atomic<int> cached[64] = {};
  if (device < 0 || device >= 64) device = 0;
  int n = cached[device].load(std::memory_order_relaxed);
  if (n == 0) {
    GRAFT_CUDA_CHECK(cudaDeviceGetAttribute(&n, cudaDevAttrMultiProcessorCount, device));
    cached[device].store(n, std::memory_order_relaxed);
  }
  return n;
}

inline bool batch_strides_multiple_of_4(const Strided& s) {
  for (int d = 0; d < s.rank; ++d)
    if (s.stride[d] % 4 != 0) return false;
  return true;
}

// An operand of the 128 x 128 kernels: outer stride so, k stride sk. Loaded along k when that stride
// is the unit one (or, neither being 1, the smaller).
inline TileOperand tile_operand(const float* p, const Strided& batch, int64_t so, int64_t sk, int64_t outer_extent,
                                int64_t K, bool* k_contig) {
  *k_contig = sk == 1 || (so != 1 && sk <= so);
  const bool vec4 = *k_contig ? float4_loads_ok(p, sk, so, K, batch_strides_multiple_of_4(batch))
                              : float4_loads_ok(p, so, sk, outer_extent, batch_strides_multiple_of_4(batch));
  return TileOperand{p, batch, so, sk, outer_extent, vec4};
}

// Calls f.template operator()<kA, kB>() for the runtime pair (a_k, b_k) (the 4 kernel instances).
template <class F>
void with_layouts(bool a_k, bool b_k, F&& f) {
  if (a_k && b_k) f.template operator()<true, true>();
  else if (a_k) f.template operator()<true, false>();
  else if (b_k) f.template operator()<false, true>();
  else f.template operator()<false, false>();
}

// out[z] = epilogue(a[z] @ b[z]) for z < batches: out contiguous [batches, M, N]; a's element (i, p)
// of batch z at a + strided_offset(ao.batch, z) + i ao.rs + p ao.cs, b's (p, j) likewise.
template <class T>
void run_gemm(const Tensor& out, const T* a, const Operand& ao, const T* b, const Operand& bo, int64_t M, int64_t N,
              int64_t K, int64_t batches, const Epilogue<T>& ep, const char* op) {
  T* po = static_cast<T*>(out.data_ptr());
  const KernelLaunch at(out.device());
  const GemmPath path = choose_gemm_path(std::is_same_v<T, float>, std::is_same_v<T, float> && float32_matmul_allows_tf32(),
                                         M, N, batches, sm_count(out.device().index));
  if constexpr (std::is_same_v<T, float>) {
    if (path != GemmPath::Tiled64) {
      bool a_k = false, b_k = false;
      const TileOperand ta = tile_operand(a, ao.batch, ao.rs, ao.cs, M, K, &a_k);  // a as (m, k)
      const TileOperand tb = tile_operand(b, bo.batch, bo.cs, bo.rs, N, K, &b_k);  // b as (n, k)
      if (path == GemmPath::WarpTiled) {
        const bool out_vec4 = N % 4 == 0 && reinterpret_cast<uintptr_t>(po) % 16 == 0;
        const dim3 grid = grid_of_tiles(M, N, kWarpTiledBM, kWarpTiledBN, batches, op);
        with_layouts(a_k, b_k, [&]<bool kA, bool kB>() {
          gemm_warptiled<kA, kB><<<grid, kWarpTiledThreads, 0, at.stream>>>(po, ta, tb, M, N, K, batches, ep, out_vec4);
        });
      } else {
        const bool out_vec2 = N % 2 == 0 && reinterpret_cast<uintptr_t>(po) % 8 == 0;
        const dim3 grid = grid_of_tiles(M, N, kTf32BM, kTf32BN, batches, op);
        with_layouts(a_k, b_k, [&]<bool kA, bool kB>() {
          gemm_tf32<kA, kB><<<grid, kTf32Threads, 0, at.stream>>>(po, ta, tb, M, N, K, batches, ep, out_vec2);
        });
      }
      GRAFT_CUDA_CHECK(cudaGetLastError());
      return;
    }
  }
  const dim3 grid = grid_of_tiles(M, N, BM, BN, batches, op);
  gemm_tiled<T><<<grid, kThreads, 0, at.stream>>>(po, a, ao, b, bo, M, N, K, batches, ep);
  GRAFT_CUDA_CHECK(cudaGetLastError());
}

}  // namespace gemm_detail

namespace gemm_detail {
// matmul's operands as the kernels take them: sizes, batch count, a and b with their batch strides.
struct MatmulProblem {
  int64_t M, N, K, batches;
  Operand ao, bo;
};
inline MatmulProblem matmul_problem(const Tensor& out, const Tensor& a, const Tensor& b) {
  const int r = out.dim();
  const ProductBatch batch = product_batch(out.shape(), a.strides(), b.strides());
  return {out.size(r - 2),
          out.size(r - 1),
          a.size(r - 1),
          batch.shape.numel(),
          Operand{make_strided(batch.shape, batch.a_strides), a.stride(r - 2), a.stride(r - 1)},
          Operand{make_strided(batch.shape, batch.b_strides), b.stride(r - 2), b.stride(r - 1)}};
}
// linear's: out[rows, F] = x[rows, K] b[K, F] with b the weight [F, K] read in place, b(k, f) = weight[f, k].
inline MatmulProblem linear_problem(const Tensor& x, const Tensor& weight) {
  const Strided none = make_strided(Shape{}, Shape{});
  return {x.size(0), weight.size(0), x.size(1), 1, Operand{none, x.stride(0), x.stride(1)},
          Operand{none, weight.stride(1), weight.stride(0)}};
}
}  // namespace gemm_detail

// The matmul slot's CUDA entry (contract at the top of this file).
inline void matmul_forward(const Tensor& out, const Tensor& a, const Tensor& b) {
  using namespace gemm_detail;
  if (out.numel() == 0) return;
  const MatmulProblem p = matmul_problem(out, a, b);
  GRAFT_DISPATCH_FLOAT(out.dtype(), "matmul (cuda)", T, [&] {
    run_gemm<T>(out, static_cast<const T*>(a.data_ptr()), p.ao, static_cast<const T*>(b.data_ptr()), p.bo, p.M, p.N, p.K,
                p.batches, Epilogue<T>{}, "matmul (cuda)");
  });
}

// The linear slot's CUDA entry: out[rows, F] = act(x[rows, K] weight[F, K]^T + bias[F]) (ops/matmul.hpp:
// out contiguous, x and weight of out's dtype, bias of it or undefined). weight is b read in place:
// b[k, f] = weight[f, k].
inline void linear_forward(const Tensor& out, const Tensor& x, const Tensor& weight, const Tensor& bias,
                           Activation act) {
  using namespace gemm_detail;
  if (out.numel() == 0) return;
  GRAFT_CHECK(!bias.defined() || bias.is_contiguous(), "linear (cuda)", "bias must be contiguous");
  const MatmulProblem p = linear_problem(x, weight);
  GRAFT_DISPATCH_FLOAT(out.dtype(), "linear (cuda)", T, [&] {
    Epilogue<T> ep;
    ep.bias = data_or_null<const T>(bias);
    ep.act = act;
    run_gemm<T>(out, static_cast<const T*>(x.data_ptr()), p.ao, static_cast<const T*>(weight.data_ptr()), p.bo, p.M,
                p.N, p.K, 1, ep, "linear (cuda)");
  });
}

}  // namespace graft::kernels::cuda
