// Sparse paged decode attention, split phase, in CUDA: the counterpart of _sparse_decode_split_kernel in
// lessismore_vllm/kernels/sparse_decode.py, with the same inputs and the same workspace layout, so the Triton
// combine kernel finishes both. Built on first use by lessismore_vllm/kernels/cuda_ext.py (torch's extension
// tooling); the reference is lessismore_vllm.reference.sparse_decode_reference.
//
// One block of 4 warps per (decode row, KV head, split). A token's K (or V) row of D elements is read by D/8 lanes
// with one 16-byte load each, so a warp reads 32/(D/8) tokens per load and keeps U such loads in flight per
// operand before using any of them (the gather is latency-bound: the addresses come from the slot list). Each
// lane keeps an online softmax per query head of the GQA group over its tokens; lanes, then warps, are merged
// at the end. Scores are in log2 units (the query is pre-scaled by scale * log2(e)), as in the Triton kernel.
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAGuard.h>
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <torch/extension.h>

#include <cmath>

namespace {

constexpr int kWarps = 4;
constexpr int kElems = 8;  // elements per lane per row: one 16-byte load of fp16/bf16

// The 2-element vector type of T and its conversion to float2.
template <typename T>
struct Pair;
template <>
struct Pair<__nv_bfloat16> {
  using type = __nv_bfloat162;
  static __device__ __forceinline__ float2 to_float2(type v) { return __bfloat1622float2(v); }
};
template <>
struct Pair<__half> {
  using type = __half2;
  static __device__ __forceinline__ float2 to_float2(type v) { return __half22float2(v); }
};

// Eight T packed in one 16-byte load -> eight floats.
template <typename T>
__device__ __forceinline__ void to_float8(const uint4& raw, float* out, const T*) {
  const auto* p = reinterpret_cast<const typename Pair<T>::type*>(&raw);
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    float2 f = Pair<T>::to_float2(p[i]);
    out[2 * i] = f.x;
    out[2 * i + 1] = f.y;
  }
}

// Weight of a partial softmax state with running max m when merged under the common max mx (0 if empty).
__device__ __forceinline__ float merge_weight(float m, float mx) { return m == -INFINITY ? 0.f : exp2f(m - mx); }

template <typename T, int D, int G, int U>
__global__ void __launch_bounds__(kWarps * 32)
    sparse_decode_split_kernel(const T* __restrict__ q, const T* __restrict__ kv, const int* __restrict__ slots,
                               const int* __restrict__ counts, float* __restrict__ acc_out,
                               float* __restrict__ ml_out, int64_t stride_qt, int64_t stride_qh,
                               int64_t stride_block, int64_t stride_head, int64_t stride_slot, int64_t stride_slots,
                               float scale_log2, int num_splits, int num_heads, int block_size) {
  constexpr int kLanesPerToken = D / kElems;
  constexpr int kTokensPerLoad = 32 / kLanesPerToken;
  constexpr int kTokensPerWarpStep = kTokensPerLoad * U;
  const int row = blockIdx.x, kv_head = blockIdx.y, split = blockIdx.z;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int sub = lane / kLanesPerToken;   // which token of a load
  const int part = lane % kLanesPerToken;  // which 8 elements of the row
  // this split's share of the row's own count (as in the Triton kernel, rows shorter than the buffer use all splits)
  const int count = counts[row];
  const int per_split = (count + num_splits - 1) / num_splits;
  const int start = min(split * per_split, count);
  const int end = min(start + per_split, count);

  float qf[G][kElems];
#pragma unroll
  for (int h = 0; h < G; ++h) {
    const T* qp = q + row * stride_qt + (kv_head * G + h) * stride_qh + part * kElems;
    to_float8(*reinterpret_cast<const uint4*>(qp), qf[h], qp);
#pragma unroll
    for (int e = 0; e < kElems; ++e) qf[h][e] *= scale_log2;
  }
  float m[G], l[G], acc[G][kElems];
#pragma unroll
  for (int h = 0; h < G; ++h) {
    m[h] = -INFINITY;
    l[h] = 0.f;
#pragma unroll
    for (int e = 0; e < kElems; ++e) acc[h][e] = 0.f;
  }

  const T* head_base = kv + kv_head * stride_head + part * kElems;
  const int* row_slots = slots + row * stride_slots;
  constexpr int kBlockStep = kWarps * kTokensPerWarpStep;
  // The slots of the next step are loaded one step ahead, so each step waits for one round trip (its K/V rows)
  // instead of two (slots, then rows).
  int next_slot[U];
  const int first = start + warp * kTokensPerWarpStep;
#pragma unroll
  for (int u = 0; u < U; ++u) {
    const int t = first + u * kTokensPerLoad + sub;
    next_slot[u] = t < end ? __ldg(row_slots + t) : 0;
  }
  for (int base = first; base < end; base += kBlockStep) {
    int slot[U];
    bool valid[U];
#pragma unroll
    for (int u = 0; u < U; ++u) {
      const int t = base + u * kTokensPerLoad + sub;
      valid[u] = t < end;
      slot[u] = next_slot[u];
      const int t_next = t + kBlockStep;
      next_slot[u] = t_next < end ? __ldg(row_slots + t_next) : 0;
    }
    uint4 kr[U], vr[U];  // all U rows' loads issued before any is used: U independent gathers in flight
#pragma unroll
    for (int u = 0; u < U; ++u) {
      if (valid[u]) {
        const T* p = head_base + static_cast<int64_t>(slot[u] / block_size) * stride_block +
                     static_cast<int64_t>(slot[u] % block_size) * stride_slot;
        kr[u] = __ldg(reinterpret_cast<const uint4*>(p));
        vr[u] = __ldg(reinterpret_cast<const uint4*>(p + D));
      } else {
        kr[u] = make_uint4(0, 0, 0, 0);
        vr[u] = make_uint4(0, 0, 0, 0);
      }
    }
    float s[U][G];
#pragma unroll
    for (int u = 0; u < U; ++u) {
      float kf[kElems];
      to_float8(kr[u], kf, head_base);
#pragma unroll
      for (int h = 0; h < G; ++h) {
        float d = 0.f;
#pragma unroll
        for (int e = 0; e < kElems; ++e) d = fmaf(qf[h][e], kf[e], d);
#pragma unroll
        for (int off = kLanesPerToken / 2; off > 0; off >>= 1) d += __shfl_xor_sync(0xffffffffu, d, off);
        s[u][h] = valid[u] ? d : -INFINITY;
      }
    }
#pragma unroll
    for (int h = 0; h < G; ++h) {
      float mx = m[h];
#pragma unroll
      for (int u = 0; u < U; ++u) mx = fmaxf(mx, s[u][h]);
      if (mx == -INFINITY) continue;  // no valid token for this lane yet
      const float alpha = merge_weight(m[h], mx);
      l[h] *= alpha;
#pragma unroll
      for (int e = 0; e < kElems; ++e) acc[h][e] *= alpha;
      m[h] = mx;
    }
#pragma unroll
    for (int u = 0; u < U; ++u) {
      float vf[kElems];
      to_float8(vr[u], vf, head_base);
#pragma unroll
      for (int h = 0; h < G; ++h) {
        const float p = valid[u] ? exp2f(s[u][h] - m[h]) : 0.f;
        l[h] += p;
#pragma unroll
        for (int e = 0; e < kElems; ++e) acc[h][e] = fmaf(p, vf[e], acc[h][e]);
      }
    }
  }

  // Merge the lanes that read different tokens of the same row part (same `part`, other `sub`).
#pragma unroll
  for (int off = kLanesPerToken; off < 32; off <<= 1) {
#pragma unroll
    for (int h = 0; h < G; ++h) {
      const float m_o = __shfl_xor_sync(0xffffffffu, m[h], off);
      const float l_o = __shfl_xor_sync(0xffffffffu, l[h], off);
      const float mx = fmaxf(m[h], m_o);
      const float a = merge_weight(m[h], mx), b = merge_weight(m_o, mx);
      l[h] = l[h] * a + l_o * b;
#pragma unroll
      for (int e = 0; e < kElems; ++e) {
        const float acc_o = __shfl_xor_sync(0xffffffffu, acc[h][e], off);
        acc[h][e] = acc[h][e] * a + acc_o * b;
      }
      m[h] = mx;
    }
  }

  // Merge the warps through shared memory and write this split's partial state.
  __shared__ float sm_m[kWarps][G], sm_l[kWarps][G], sm_acc[kWarps][G][D];
  if (sub == 0) {
#pragma unroll
    for (int h = 0; h < G; ++h) {
#pragma unroll
      for (int e = 0; e < kElems; ++e) sm_acc[warp][h][part * kElems + e] = acc[h][e];
      if (part == 0) {
        sm_m[warp][h] = m[h];
        sm_l[warp][h] = l[h];
      }
    }
  }
  __syncthreads();
  for (int i = threadIdx.x; i < G * D; i += kWarps * 32) {
    const int h = i / D, d = i % D;
    float mx = -INFINITY;
#pragma unroll
    for (int w = 0; w < kWarps; ++w) mx = fmaxf(mx, sm_m[w][h]);
    float total_l = 0.f, total_acc = 0.f;
#pragma unroll
    for (int w = 0; w < kWarps; ++w) {
      const float a = merge_weight(sm_m[w][h], mx);
      total_l += sm_l[w][h] * a;
      total_acc += sm_acc[w][h][d] * a;
    }
    const int64_t out = (static_cast<int64_t>(row) * num_heads + kv_head * G + h) * num_splits + split;
    acc_out[out * D + d] = total_acc;
    if (d == 0) {
      ml_out[out * 2] = mx;
      ml_out[out * 2 + 1] = total_l;
    }
  }
}

template <typename T, int G>
void launch(const torch::Tensor& q, const torch::Tensor& kv, const torch::Tensor& slots, const torch::Tensor& counts,
            torch::Tensor& acc, torch::Tensor& ml, double scale_log2, int64_t num_splits) {
  constexpr int D = 128, U = 4;  // rows in flight per lane and operand (8 measured slower: docs/performance.md)
  const dim3 grid(q.size(0), kv.size(1), num_splits);
  const cudaStream_t stream = at::cuda::getCurrentCUDAStream();
  sparse_decode_split_kernel<T, D, G, U><<<grid, kWarps * 32, 0, stream>>>(
      reinterpret_cast<const T*>(q.data_ptr()), reinterpret_cast<const T*>(kv.data_ptr()),
      slots.data_ptr<int>(), counts.data_ptr<int>(), acc.data_ptr<float>(), ml.data_ptr<float>(), q.stride(0),
      q.stride(1), kv.stride(0), kv.stride(1), kv.stride(2), slots.stride(0), static_cast<float>(scale_log2),
      static_cast<int>(num_splits), static_cast<int>(q.size(1)), static_cast<int>(kv.size(2)));
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

template <typename T>
void dispatch_group(int64_t group, const torch::Tensor& q, const torch::Tensor& kv, const torch::Tensor& slots,
                    const torch::Tensor& counts, torch::Tensor& acc, torch::Tensor& ml, double scale_log2,
                    int64_t num_splits) {
  switch (group) {
    case 4: return launch<T, 4>(q, kv, slots, counts, acc, ml, scale_log2, num_splits);
    case 8: return launch<T, 8>(q, kv, slots, counts, acc, ml, scale_log2, num_splits);
    default: TORCH_CHECK(false, "lessismore csrc sparse decode: GQA group ", group, " not built (4 or 8)");
  }
}

}  // namespace

// q [rows, Hq, 128], kv [blocks, Hkv, block_size, 256] (K then V in the last dim), both with unit last stride;
// slots [rows, width] int32 physical slots; counts [rows] int32; acc/ml: fp32 workspace views laid out as
// [rows, Hq, num_splits, 128] and [rows, Hq, num_splits, 2]. No allocation, no host sync: CUDA-graph safe.
void sparse_decode_split(torch::Tensor q, torch::Tensor kv, torch::Tensor slots, torch::Tensor counts,
                         torch::Tensor acc, torch::Tensor ml, double scale_log2, int64_t num_splits) {
  TORCH_CHECK(q.is_cuda() && kv.is_cuda() && q.dim() == 3 && kv.dim() == 4, "expected CUDA q [rows, Hq, D], kv 4-D");
  TORCH_CHECK(q.size(2) == 128 && kv.size(3) == 256, "head_dim 128 only (others use the Triton kernel)");
  TORCH_CHECK(q.stride(2) == 1 && kv.stride(3) == 1, "unit stride in the last dimension");
  TORCH_CHECK(q.scalar_type() == kv.scalar_type(), "q and kv dtypes differ");
  TORCH_CHECK(slots.scalar_type() == torch::kInt32 && counts.scalar_type() == torch::kInt32, "int32 slots/counts");
  TORCH_CHECK(acc.scalar_type() == torch::kFloat32 && ml.scalar_type() == torch::kFloat32, "fp32 workspace");
  TORCH_CHECK(q.size(1) % kv.size(1) == 0, "query heads must be a multiple of KV heads");
  const at::cuda::OptionalCUDAGuard guard(q.device());
  const int64_t group = q.size(1) / kv.size(1);
  if (q.scalar_type() == torch::kBFloat16) {
    dispatch_group<__nv_bfloat16>(group, q, kv, slots, counts, acc, ml, scale_log2, num_splits);
  } else {
    TORCH_CHECK(q.scalar_type() == torch::kFloat16, "bf16 or fp16 only");
    dispatch_group<__half>(group, q, kv, slots, counts, acc, ml, scale_log2, num_splits);
  }
}

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("sparse_decode_split", &sparse_decode_split, "LessIsMore sparse decode, split phase (CUDA)");
}
