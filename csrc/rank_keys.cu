// Rank keys of each head's top-`mid` list (the selection's step between the per-head top-k and the union), in CUDA:
// the counterpart of _rank_keys_kernel(FROM_POSITIONS=True) in lessismore_vllm/kernels/selection.py.
// One block per (row, query head): the head's top-mid positions (ascending, as FlashInfer's deterministic top-k
// returns them) get their logits as order-preserving 32-bit keys, a stable block radix sort (CUB) puts them in
// rank order (logit descending, ties to the lower position: the oracle's stable sort), and rank * total_heads +
// head goes to keys[row, position] by atomic min (the rank-major union's key). Built on first use by
// lessismore_vllm/kernels/cuda_ext.py; the reference is lessismore_vllm.selection.rank_keys. On the H100 it took
// 9 / 26 us where the Triton bitonic sort took 20 / 86 us at 1 / 16 rows x 32 heads x 1536 (docs/performance.md).
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAGuard.h>
#include <algorithm>
#include <cub/block/block_radix_sort.cuh>
#include <cub/block/block_scan.cuh>
#include <torch/extension.h>

namespace {

constexpr int kThreads = 256;

// Profiling only (never in the product build): compiled with -DLESSISMORE_PHASE_CLOCKS, rank_keys_from_logits_kernel
// records clock64() at the end of each phase for its first kTimedBlocks blocks (phase_clocks() returns them), to see
// where a head's ranking spends its time. Phases: 0 start, 1-3 radix passes (a skipped pass repeats the previous
// time), 4 compaction, 5 winners to registers, 6 sort (bucket_ranks: placement), 7 rank-key scatter (bucket_ranks:
// the ranks inside buckets and the scatter); slot 8 is 1 where bucket_ranks ranked the winners (2: of the kept
// candidates, rank_kept); slot 9 is the end of rank_kept's sample and keep pass, whose radix passes then follow it.
#ifdef LESSISMORE_PHASE_CLOCKS
constexpr int kTimedBlocks = 4096, kPhases = 10;
__device__ long long g_phase_clocks[kTimedBlocks][kPhases];
#define PHASE_MARK(i)                                                                \
  do {                                                                               \
    __syncthreads();                                                                 \
    const int timed = blockIdx.x * gridDim.y + blockIdx.y;                           \
    if (threadIdx.x == 0 && timed < kTimedBlocks) g_phase_clocks[timed][i] = clock64(); \
  } while (0)
#define PHASE_VALUE(i, v)                                                            \
  do {                                                                               \
    const int timed = blockIdx.x * gridDim.y + blockIdx.y;                           \
    if (threadIdx.x == 0 && timed < kTimedBlocks) g_phase_clocks[timed][i] = (v);   \
  } while (0)
#else
#define PHASE_MARK(i) \
  do {                \
  } while (0)
#define PHASE_VALUE(i, v) \
  do {                    \
  } while (0)
#endif

// Order-preserving 32-bit key of an fp32 logit: larger logit = larger key. -0.0 (0x80000000) keeps its bits, which
// are +0.0's key: equal, as in the oracle.
__device__ __forceinline__ uint32_t order_key(float x) {
  const uint32_t bits = __float_as_uint(x);
  return bits == 0x80000000u ? bits : bits ^ ((bits >> 31) ? 0xFFFFFFFFu : 0x80000000u);
}

template <int ITEMS>
__global__ void __launch_bounds__(kThreads)
    rank_keys_kernel(const int* __restrict__ top, const float* __restrict__ logits, const int* __restrict__ seq_lens,
                     int* __restrict__ keys, int64_t stride_top_row, int64_t stride_top_head, int64_t stride_lr,
                     int64_t stride_lh, int64_t stride_kt, int mid, int budget, int total_heads, int head_offset) {
  using Sort = cub::BlockRadixSort<uint32_t, kThreads, ITEMS, int>;
  __shared__ typename Sort::TempStorage storage;
  const int row = blockIdx.x, head = blockIdx.y;
  if (seq_lens[row] <= budget) return;  // the row fits the budget: nothing is ranked (uniform per block)
  const int* list = top + row * stride_top_row + head * stride_top_head;
  const float* row_logits = logits + row * stride_lr + head * stride_lh;
  uint32_t key[ITEMS];
  int pos[ITEMS];
#pragma unroll
  for (int i = 0; i < ITEMS; ++i) {
    const int idx = threadIdx.x * ITEMS + i;  // blocked arrangement: a stable sort keeps the position order of ties
    if (idx < mid) {
      pos[i] = list[idx];
      key[i] = ~order_key(row_logits[pos[i]]);  // ascending sort = logit descending
    } else {
      pos[i] = -1;
      key[i] = 0xFFFFFFFFu;  // after every real entry
    }
  }
  Sort(storage).Sort(key, pos);
#pragma unroll
  for (int i = 0; i < ITEMS; ++i) {
    const int rank = threadIdx.x * ITEMS + i;
    if (rank < mid) atomicMin(keys + row * stride_kt + pos[i], rank * total_heads + head_offset + head);
  }
}

// ---- The per-head top-k and the rank keys in one kernel (replaces FlashInfer's top-k + rank_keys_kernel) ----
constexpr int kSelectThreads = 512;
constexpr int kSelectItems = 4;                        // sort capacity 512 x 4 = 2048 = the largest mid
constexpr int kSelectBins = 4096;                      // 12-bit digits
constexpr int kSelectCache = 16384;                    // cached keys (64 KB: two blocks fit an H100 SM)
constexpr int kSelectCacheAlone = 45056;               // with at most one block per SM: 176 KB
constexpr int kBucketBits = 10;                        // bucket_ranks: 1024 buckets of the winners' keys
constexpr int kBuckets = 1 << kBucketBits;
constexpr int kBucketMaxMid = 1536;                    // bucket_ranks' placed winners share the histogram's memory
constexpr int kBucketLimit = 48;                       // default: the most winners a bucket may hold (else sort)
static_assert(kBuckets + 2 * kBucketMaxMid <= kSelectBins && kBuckets % kSelectThreads == 0);
constexpr int kSample = 2048;                          // rank_kept: candidates sampled for the keep threshold
constexpr int kKeepMax = 8192;                         // rank_kept: the most candidates kept (keys + positions: 64 KB)
static_assert(kSample % kSelectThreads == 0);

struct Threshold {  // of the keys left in the running: which bin holds the k-th largest, and how many are above it
  int bin, above, count;
};

constexpr int kSelectUnroll = 16;                      // loads in flight per thread in a pass over the candidates

// Calls visit(key) for every candidate key (any order). FIRST: loads key i as load(i) and caches the first cache_len
// keys; later passes read the cache (and load past it). Each thread keeps kSelectUnroll loads in flight: at batch 1
// the pass is latency-bound.
template <bool FIRST, typename Load, typename Visit>
__device__ __forceinline__ void for_each_candidate(Load load, uint32_t* cache, int cache_len, int n, Visit visit) {
  for (int base = threadIdx.x; base < n; base += kSelectThreads * kSelectUnroll) {
    uint32_t key[kSelectUnroll];
#pragma unroll
    for (int j = 0; j < kSelectUnroll; ++j) {
      const int i = base + j * kSelectThreads;
      if (i < n) key[j] = FIRST || i >= cache_len ? load(i) : cache[i];
    }
#pragma unroll
    for (int j = 0; j < kSelectUnroll; ++j) {
      const int i = base + j * kSelectThreads;
      if (i < n) {
        if (FIRST && i < cache_len) cache[i] = key[j];
        visit(key[j]);
      }
    }
  }
}

using SelectScan = cub::BlockScan<int, kSelectThreads>;
using SelectSort = cub::BlockRadixSort<uint32_t, kSelectThreads, kSelectItems, int>;

struct SelectShared {
  union {
    typename SelectScan::TempStorage scan;
    typename SelectSort::TempStorage sort;
  } cub;
  union {
    int hist[kSelectBins];
    struct {
      uint32_t key[kSelectThreads * kSelectItems];
      int pos[kSelectThreads * kSelectItems];
    } winners;
  } data;
  Threshold found;
  uint32_t top;  // the largest winning key
  int placed;    // compact_whole's winners so far
  int warp_greater[kSelectThreads / 32], warp_equal[kSelectThreads / 32];  // compact's per-warp counts
};

// The bin holding the k-th largest key of the histogram (bins ascending in key order), the count above it and in it.
template <int BINS>
__device__ Threshold find_threshold(SelectShared& sh, int k) {
  constexpr int kPer = BINS >= kSelectThreads ? BINS / kSelectThreads : 1;
  const int first = threadIdx.x * kPer;
  int mine = 0;
#pragma unroll
  for (int b = 0; b < kPer; ++b) mine += first + b < BINS ? sh.data.hist[first + b] : 0;
  int before, total;
  SelectScan(sh.cub.scan).InclusiveSum(mine, before, total);
  int above = total - before;  // keys in the bins of higher threads
#pragma unroll
  for (int b = kPer - 1; b >= 0; --b) {
    const int c = first + b < BINS ? sh.data.hist[first + b] : 0;
    if (above < k && above + c >= k) sh.found = Threshold{first + b, above, c};
    above += c;
  }
  __syncthreads();
  return sh.found;
}

// One radix pass: the histogram of the digit (key >> shift) & (BINS - 1) over keys whose bits under mask equal prefix.
template <int BINS, bool FIRST, typename Load>
__device__ Threshold radix_pass(SelectShared& sh, Load load, uint32_t* cache, int cache_len, int n, uint32_t mask,
                                uint32_t prefix, int shift, int k) {
  for (int b = threadIdx.x; b < BINS; b += kSelectThreads) sh.data.hist[b] = 0;
  __syncthreads();
  int* hist = sh.data.hist;
  for_each_candidate<FIRST>(load, cache, cache_len, n, [&](uint32_t key) {
    if ((key & mask) == prefix) atomicAdd(&hist[(key >> shift) & (BINS - 1)], 1);
  });
  __syncthreads();
  return find_threshold<BINS>(sh, k);
}

struct Cut {  // the k largest keys: every key whose bits under mask are above prefix, and the first `take` equal to it
  uint32_t mask, prefix;
  int take;
  bool whole;  // every key equal to prefix is taken: the cut does not depend on positions
};

// The cut of the k largest of n 32-bit keys, in passes over the top 12 bits, the next 12 among keys sharing them
// and the last 8; a pass is skipped once its threshold bin is taken whole.
template <typename Load>
__device__ Cut radix_select(SelectShared& sh, Load load, uint32_t* cache, int cache_len, int n, int k) {
  Threshold t = radix_pass<kSelectBins, true>(sh, load, cache, cache_len, n, 0u, 0u, 20, k);
  PHASE_MARK(1);
  Cut cut{0xFFF00000u, uint32_t(t.bin) << 20, k - t.above, true};
  if (t.count == cut.take) {
    PHASE_MARK(2);
    PHASE_MARK(3);
    return cut;
  }
  t = radix_pass<kSelectBins, false>(sh, load, cache, cache_len, n, cut.mask, cut.prefix, 8, cut.take);
  PHASE_MARK(2);
  cut = Cut{0xFFFFFF00u, cut.prefix | uint32_t(t.bin) << 8, cut.take - t.above, true};
  if (t.count == cut.take) {
    PHASE_MARK(3);
    return cut;
  }
  t = radix_pass<256, false>(sh, load, cache, cache_len, n, cut.mask, cut.prefix, 0, cut.take);
  PHASE_MARK(3);
  return Cut{~0u, cut.prefix | uint32_t(t.bin), cut.take - t.above, t.count == cut.take - t.above};
}

// The cut's keys in position order: emit(place, i, key) for each, place = its index among them. Every key above the
// threshold, and of those equal to it the lowest positions (the oracle's stable sort). Each warp owns a contiguous
// run of the candidates: a first pass counts its keys above and at the threshold (warp ballots), the warps' counts
// are summed in order (one barrier), and a second pass places each key by its warp's offset plus the ballots of the
// lanes before it. No block-wide scan per chunk.
template <typename Load, typename Emit>
__device__ void compact(SelectShared& sh, Load load, const uint32_t* cache, int cache_len, int n, Cut cut,
                        Emit emit) {
  constexpr int kWarps = kSelectThreads / 32;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const unsigned before_me = (1u << lane) - 1;
  const int run = ((n + kWarps - 1) / kWarps + 31) / 32 * 32;  // a multiple of 32: whole ballots
  const int lo = min(n, warp * run), hi = min(n, lo + run);
  int greater = 0, equal = 0;
#pragma unroll 4
  for (int base = lo; base < hi; base += 32) {  // warp-uniform trip count: every lane takes part in the ballots
    const int i = base + lane;
    const uint32_t m = i < hi ? (i < cache_len ? cache[i] : load(i)) & cut.mask : 0u;
    greater += __popc(__ballot_sync(~0u, i < hi && m > cut.prefix));
    equal += __popc(__ballot_sync(~0u, i < hi && m == cut.prefix));
  }
  if (lane == 0) {
    sh.warp_greater[warp] = greater;
    sh.warp_equal[warp] = equal;
  }
  __syncthreads();
  greater = equal = 0;
  for (int w = 0; w < warp; ++w) {
    greater += sh.warp_greater[w];
    equal += sh.warp_equal[w];
  }
  for (int base = lo; base < hi; base += 32) {
    const int i = base + lane;
    const uint32_t key = i < hi ? (i < cache_len ? cache[i] : load(i)) : 0u;
    const uint32_t m = key & cut.mask;
    const bool above = i < hi && m > cut.prefix, at = i < hi && m == cut.prefix;
    const unsigned above_lanes = __ballot_sync(~0u, above), at_lanes = __ballot_sync(~0u, at);
    const int g = greater + __popc(above_lanes & before_me), e = equal + __popc(at_lanes & before_me);
    if (above || (at && e < cut.take)) emit(g + min(e, cut.take), i, key);
    greater += __popc(above_lanes);
    equal += __popc(at_lanes);
  }
  __syncthreads();
}

// The cut's keys in no particular order, for a cut taken whole (every key at or above it wins, whatever its
// position): emit(place, i, key) for each, places 0..count-1 (count: sh.placed after the call). One pass: each warp
// appends its winners of CHUNKS chunks of 32 candidates with one shared-memory atomic (more chunks: more loads in
// flight, for a pass over global memory). bucket_ranks does not need position order; the sort does (compact).
template <int CHUNKS, typename Load, typename Emit>
__device__ void compact_whole(SelectShared& sh, Load load, const uint32_t* cache, int cache_len, int n, Cut cut,
                              Emit emit) {
  constexpr int kChunks = CHUNKS;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const unsigned before_me = (1u << lane) - 1;
  if (threadIdx.x == 0) sh.placed = 0;
  __syncthreads();
  for (int base = warp * 32 * kChunks; base < n; base += kSelectThreads * kChunks) {  // warp-uniform
    uint32_t key[kChunks];
    unsigned wins[kChunks];
    int count = 0;
#pragma unroll
    for (int c = 0; c < kChunks; ++c) {
      const int i = base + c * 32 + lane;
      key[c] = i < n ? (i < cache_len ? cache[i] : load(i)) : 0u;
      wins[c] = __ballot_sync(~0u, i < n && (key[c] & cut.mask) >= cut.prefix);
      count += __popc(wins[c]);
    }
    int at = 0;
    if (lane == 0 && count > 0) at = atomicAdd(&sh.placed, count);
    at = __shfl_sync(~0u, at, 0);
#pragma unroll
    for (int c = 0; c < kChunks; ++c) {
      if (wins[c] >> lane & 1u) emit(at + __popc(wins[c] & before_me), base + c * 32 + lane, key[c]);
      at += __popc(wins[c]);
    }
  }
  __syncthreads();
}

// Rank order without a full sort, for the winners' sort keys (~order key: ascending = rank order), all in [first,
// last]: a counting sort by the top kBucketBits bits of key - first, then each winner's place inside its bucket by
// comparing it with the bucket's other entries (key, then position: the oracle's stable sort). The CUB radix sort
// makes ~6 passes of block-wide scans over the winners; this makes one, and each bucket holds a few winners when the
// logits near the cut are spread out. Returns false, having written no rank key, when a bucket holds more than
// `limit` winners (many equal or clustered logits): the caller sorts instead. Uniform per block.
__device__ bool bucket_ranks(SelectShared& sh, const uint32_t (&key)[kSelectItems], const int (&pos)[kSelectItems],
                             int mid, uint32_t first, uint32_t last, int limit, int* row_keys, int total_heads,
                             int key_base) {
  constexpr int kPer = kBuckets / kSelectThreads;
  int* const start = sh.data.hist;  // counts, then each bucket's first place
  uint32_t* const placed_key = reinterpret_cast<uint32_t*>(sh.data.hist + kBuckets);
  int* const placed_pos = sh.data.hist + kBuckets + kBucketMaxMid;
  const uint32_t span = last - first;
  const int shift = max(0, 32 - __clz(span) - kBucketBits);  // (span >> shift) < kBuckets
  for (int b = threadIdx.x; b < kBuckets; b += kSelectThreads) start[b] = 0;
  __syncthreads();
  int bucket[kSelectItems], slot[kSelectItems];
#pragma unroll
  for (int i = 0; i < kSelectItems; ++i) {
    if (threadIdx.x * kSelectItems + i < mid) {
      bucket[i] = static_cast<int>((key[i] - first) >> shift);
      slot[i] = atomicAdd(&start[bucket[i]], 1);  // order inside a bucket does not matter: ranks compare entries
    }
  }
  __syncthreads();
  int count[kPer], mine = 0, largest = 0;
#pragma unroll
  for (int j = 0; j < kPer; ++j) {
    count[j] = start[threadIdx.x * kPer + j];
    mine += count[j];
    largest = max(largest, count[j]);
  }
  if (__syncthreads_or(largest > limit)) return false;
  int before;
  SelectScan(sh.cub.scan).ExclusiveSum(mine, before);
#pragma unroll
  for (int j = 0; j < kPer; ++j) {  // each thread rewrites only the buckets it read
    start[threadIdx.x * kPer + j] = before;
    before += count[j];
  }
  __syncthreads();
#pragma unroll
  for (int i = 0; i < kSelectItems; ++i) {
    if (threadIdx.x * kSelectItems + i < mid) {
      const int at = start[bucket[i]] + slot[i];
      placed_key[at] = key[i];
      placed_pos[at] = pos[i];
    }
  }
  __syncthreads();
  PHASE_MARK(6);
#pragma unroll
  for (int i = 0; i < kSelectItems; ++i) {
    if (threadIdx.x * kSelectItems + i < mid) {
      const int b = bucket[i];
      const int end = b + 1 < kBuckets ? start[b + 1] : mid;
      int rank = start[b];
      for (int j = start[b]; j < end; ++j) {
        const uint32_t k = placed_key[j];
        rank += k < key[i] || (k == key[i] && placed_pos[j] < pos[i]);
      }
      atomicMin(row_keys + pos[i], rank * total_heads + key_base);
    }
  }
  PHASE_MARK(7);
  PHASE_VALUE(8, 1);
  return true;
}

// The winners (sh.data.winners, mid of them) into registers, blocked as the stable sort needs; padding sorts last.
__device__ __forceinline__ void winners_to_registers(SelectShared& sh, int mid, uint32_t (&key)[kSelectItems],
                                                     int (&pos)[kSelectItems]) {
#pragma unroll
  for (int i = 0; i < kSelectItems; ++i) {
    const int idx = threadIdx.x * kSelectItems + i;
    key[i] = idx < mid ? sh.data.winners.key[idx] : 0xFFFFFFFFu;
    pos[i] = idx < mid ? sh.data.winners.pos[idx] : -1;
  }
  __syncthreads();
}

// The 12-bit bin (top key bits) at or above which the candidates' keys are kept: the bin of the r-th largest of
// kSample evenly spaced candidates, r = m + 3 sqrt(m) + 4 where m = mid * kSample / n is the number of winners the
// sample should hold. Keys in that bin or above then number at least mid with high probability; the caller checks.
template <typename Load>
__device__ uint32_t keep_bin(SelectShared& sh, Load load, int n, int mid) {
  constexpr int kPer = kSample / kSelectThreads;
  uint32_t key[kPer];
#pragma unroll
  for (int j = 0; j < kPer; ++j) {
    key[j] = load(static_cast<int>(static_cast<int64_t>(threadIdx.x + j * kSelectThreads) * n / kSample));
  }
  for (int b = threadIdx.x; b < kSelectBins; b += kSelectThreads) sh.data.hist[b] = 0;
  __syncthreads();
#pragma unroll
  for (int j = 0; j < kPer; ++j) atomicAdd(&sh.data.hist[key[j] >> 20], 1);
  __syncthreads();
  const float m = static_cast<float>(mid) * kSample / n;
  const int r = min(kSample, static_cast<int>(ceilf(m + 3.0f * sqrtf(m))) + 4);
  return static_cast<uint32_t>(find_threshold<kSelectBins>(sh, r).bin);
}

// A head's ranking over a kept subset of its candidates, for long rows (n >= 4 mid): one pass over the logits keeps
// the keys at or above keep_bin's bin with their positions (cache: kept keys, then positions; at most keep_max),
// and the radix select, compaction and bucket ranks then run over those few thousand keys in shared memory instead
// of every candidate. The histogram passes' shared-memory atomics over all n keys were the first pass's cost.
// Returns false, having written no rank key, where the ordered path must run: fewer than mid keys kept (the sample
// misjudged), more than keep_max, ties at the cut (the lowest positions win: position order), or crowded buckets.
// Expects sh.top == 0; uniform per block.
template <typename Load>
__device__ bool rank_kept(SelectShared& sh, Load logit_key, uint32_t* cache, int keep_max, int n, int mid, int sinks,
                          int bucket_limit, int* row_keys, int total_heads, int key_base) {
  uint32_t* const kept_key = cache;
  int* const kept_pos = reinterpret_cast<int*>(cache + keep_max);
  const Cut keep{0xFFF00000u, keep_bin(sh, logit_key, n, mid) << 20, 0, true};
  compact_whole<8>(sh, logit_key, cache, 0, n, keep, [&](int at, int i, uint32_t key) {
    if (at < keep_max) {
      kept_key[at] = key;
      kept_pos[at] = i;
    }
  });
  const int kept = sh.placed;
  PHASE_MARK(9);
  if (kept < mid || kept > keep_max) return false;
  const auto kept_load = [kept_key](int i) { return kept_key[i]; };
  const Cut cut = radix_select(sh, kept_load, kept_key, kept, kept, mid);
  if (!cut.whole) return false;
  uint32_t top = 0;
  compact_whole<4>(sh, kept_load, kept_key, kept, kept, cut, [&](int at, int i, uint32_t key) {
    sh.data.winners.key[at] = ~key;  // ascending = logit descending
    sh.data.winners.pos[at] = sinks + kept_pos[i];
    top = max(top, key);
  });
  atomicMax(&sh.top, top);
  PHASE_MARK(4);
  uint32_t key[kSelectItems];
  int pos[kSelectItems];
  winners_to_registers(sh, mid, key, pos);
  PHASE_MARK(5);
  return bucket_ranks(sh, key, pos, mid, ~sh.top, ~cut.prefix, bucket_limit, row_keys, total_heads, key_base);
}

// One block per (row, query head) over the head's candidates logits[lo, lo + n) (lo = sinks, n = L - sinks -
// recent). Long rows first try rank_kept (a sampled threshold keeps a few thousand candidates; the steps below run
// over those). Otherwise, or where that cannot rank: the cut of its mid largest order keys (radix_select), the winners
// (compact_whole where the cut is taken whole, else in position order: compact), their rank order (bucket_ranks, or
// where its buckets are crowded a stable block radix sort, ties staying in position order), and rank * total_heads +
// head written to each winner's rank key by atomic min. The sort covers only the bits where the winners' keys can
// differ (those under the highest bit where the largest winner and the cut's prefix differ). The first cache_len
// candidates' keys stay in shared memory after the first pass, so such rows read the logits once.
__global__ void __launch_bounds__(kSelectThreads, 2)
    rank_keys_from_logits_kernel(const float* __restrict__ logits, const int* __restrict__ seq_lens,
                                 int* __restrict__ keys, int64_t stride_lr, int64_t stride_lh, int64_t stride_kt,
                                 int mid, int budget, int sinks, int recent, int total_heads, int head_offset,
                                 int cache_len, int bucket_limit, int keep_max) {
  extern __shared__ __align__(16) uint32_t cache[];
  __shared__ SelectShared sh;
  const int row = blockIdx.x, head = blockIdx.y;
  const int L = seq_lens[row];
  if (L <= budget) return;  // the row fits the budget: nothing is ranked (uniform per block)
  const int n = L - sinks - recent;  // > mid, since L > budget
  const float* src = logits + row * stride_lr + head * stride_lh + sinks;
  const auto logit_key = [src](int i) { return order_key(src[i]); };
  if (threadIdx.x == 0) sh.top = 0;
  PHASE_MARK(0);
  PHASE_VALUE(8, 0);

  int* const row_keys = keys + row * stride_kt;
  const int key_base = head_offset + head;
  if (keep_max >= 2 * mid && n >= 4 * mid && mid <= kBucketMaxMid && bucket_limit > 0) {
    if (rank_kept(sh, logit_key, cache, keep_max, n, mid, sinks, bucket_limit, row_keys, total_heads, key_base)) {
      PHASE_VALUE(8, 2);
      return;
    }
    if (threadIdx.x == 0) sh.top = 0;  // every thread has read it (bucket_ranks' barrier) or it was never set
  }

  const Cut cut = radix_select(sh, logit_key, cache, cache_len, n, mid);
  uint32_t top = 0;
  const auto winner = [&](int at, int i, uint32_t key) {
    sh.data.winners.key[at] = ~key;  // ascending sort = logit descending
    sh.data.winners.pos[at] = sinks + i;
    top = max(top, key);
  };
  // A cut taken whole (the usual case) needs no position order unless the sort below runs.
  const bool whole = cut.whole && mid <= kBucketMaxMid && bucket_limit > 0;
  if (whole) {
    compact_whole<4>(sh, logit_key, cache, cache_len, n, cut, winner);
  } else {
    compact(sh, logit_key, cache, cache_len, n, cut, winner);
  }
  atomicMax(&sh.top, top);
  PHASE_MARK(4);

  // Rank order (bucket_ranks, else a stable sort) of the winners.
  uint32_t key[kSelectItems];
  int pos[kSelectItems];
  winners_to_registers(sh, mid, key, pos);
  PHASE_MARK(5);
  if (mid <= kBucketMaxMid && bucket_ranks(sh, key, pos, mid, ~sh.top, ~cut.prefix, bucket_limit, row_keys,
                                           total_heads, key_base)) {
    return;
  }
  if (whole) {  // crowded buckets: the stable sort needs the winners in position order (ties to the lower position)
    compact(sh, logit_key, cache, cache_len, n, cut, winner);
    winners_to_registers(sh, mid, key, pos);
  }
  // Every winner lies in [cut.prefix, top], so the bits above the highest one where those two differ are shared.
  const int end_bit = max(1, 32 - __clz(sh.top ^ cut.prefix));
  SelectSort(sh.cub.sort).Sort(key, pos, 0, end_bit);
  PHASE_MARK(6);
#pragma unroll
  for (int i = 0; i < kSelectItems; ++i) {
    const int rank = threadIdx.x * kSelectItems + i;
    if (rank < mid) atomicMin(row_keys + pos[i], rank * total_heads + key_base);
  }
  PHASE_MARK(7);
}

}  // namespace

void rank_keys(torch::Tensor top, torch::Tensor logits, torch::Tensor seq_lens, torch::Tensor keys, int64_t mid,
               int64_t budget, int64_t total_heads, int64_t head_offset) {
  TORCH_CHECK(top.dtype() == torch::kInt32 && logits.dtype() == torch::kFloat32 && keys.dtype() == torch::kInt32 &&
              seq_lens.dtype() == torch::kInt32, "rank_keys: int32 top, seq_lens and keys, fp32 logits");
  TORCH_CHECK(top.stride(2) == 1 && logits.stride(2) == 1 && keys.stride(1) == 1);
  TORCH_CHECK(mid >= 1 && mid <= kThreads * 8, "mid must be in [1, 2048]");
  const at::cuda::CUDAGuard guard(top.device());
  const dim3 grid(top.size(0), top.size(1));
  auto stream = at::cuda::getCurrentCUDAStream();
  const int items = (mid + kThreads - 1) / kThreads;
#define LAUNCH(N)                                                                                                 \
  case N:                                                                                                         \
    rank_keys_kernel<N><<<grid, kThreads, 0, stream>>>(                                                           \
        top.data_ptr<int>(), logits.data_ptr<float>(), seq_lens.data_ptr<int>(), keys.data_ptr<int>(),            \
        top.stride(0), top.stride(1), logits.stride(0), logits.stride(1), keys.stride(0), mid, budget, total_heads, \
        head_offset);                                                                                             \
    break;
  switch (items) { LAUNCH(1) LAUNCH(2) LAUNCH(3) LAUNCH(4) LAUNCH(5) LAUNCH(6) LAUNCH(7) LAUNCH(8) }
#undef LAUNCH
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

namespace {

// Once per process: the most keys this GPU lets a block cache beside the kernel's static shared memory
// (~35 KB), at most kSelectCacheAlone, and the kernel allowed that much (static + dynamic above 48 KB needs the
// attribute, set before the first launch).
int most_cached_keys() {
  static const int most = [] {
    cudaFuncAttributes attr;
    C10_CUDA_CHECK(cudaFuncGetAttributes(&attr, rank_keys_from_logits_kernel));
    const int64_t room = static_cast<int64_t>(at::cuda::getCurrentDeviceProperties()->sharedMemPerBlockOptin) -
                         static_cast<int64_t>(attr.sharedSizeBytes);
    const int keys = static_cast<int>(std::max<int64_t>(0, std::min<int64_t>(kSelectCacheAlone, room / 4)));
    C10_CUDA_CHECK(cudaFuncSetAttribute(rank_keys_from_logits_kernel,
                                        cudaFuncAttributeMaxDynamicSharedMemorySize,
                                        keys * static_cast<int>(sizeof(uint32_t))));
    return keys;
  }();
  return most;
}

}  // namespace

// bucket_limit: bucket_ranks ranks a head's winners when no bucket holds more (0: always the CUB sort; for A/B runs).
// keep: long rows rank a kept subset of their candidates (rank_kept) where the cache can hold it (false: never; A/B).
void rank_keys_from_logits(torch::Tensor logits, torch::Tensor seq_lens, torch::Tensor keys, int64_t mid,
                           int64_t budget, int64_t sinks, int64_t recent, int64_t total_heads, int64_t head_offset,
                           int64_t bucket_limit, bool keep) {
  TORCH_CHECK(logits.dtype() == torch::kFloat32 && keys.dtype() == torch::kInt32 && seq_lens.dtype() == torch::kInt32,
              "rank_keys_from_logits: fp32 logits, int32 seq_lens and keys");
  TORCH_CHECK(logits.dim() == 3 && logits.stride(2) == 1 && keys.stride(1) == 1);
  TORCH_CHECK(mid >= 1 && mid <= kSelectThreads * kSelectItems, "mid must be in [1, 2048]");
  TORCH_CHECK(seq_lens.size(0) <= logits.size(0) && seq_lens.size(0) <= keys.size(0));
  const at::cuda::CUDAGuard guard(logits.device());
  // Cache as many keys as the widest row can have candidates, up to kSelectCache, or kSelectCacheAlone where every
  // block has an SM to itself (batch 1: 32 blocks): fixed for a given batch and buffer, so a captured graph replays
  // with the same launch.
  const int64_t blocks = seq_lens.size(0) * logits.size(1);
  const int cap = std::min(most_cached_keys(),
                           blocks <= at::cuda::getCurrentDeviceProperties()->multiProcessorCount ? kSelectCacheAlone
                                                                                                  : kSelectCache);
  const int64_t widest = std::max<int64_t>(0, logits.size(2) - sinks - recent);
  const int cache_len = static_cast<int>(std::min<int64_t>(widest, cap));
  const int smem = cache_len * static_cast<int>(sizeof(uint32_t));
  if (seq_lens.size(0) == 0) return;
  const dim3 grid(seq_lens.size(0), logits.size(1));
  rank_keys_from_logits_kernel<<<grid, kSelectThreads, smem, at::cuda::getCurrentCUDAStream()>>>(
      logits.data_ptr<float>(), seq_lens.data_ptr<int>(), keys.data_ptr<int>(), logits.stride(0), logits.stride(1),
      keys.stride(0), mid, budget, sinks, recent, total_heads, head_offset, cache_len,
      static_cast<int>(std::min<int64_t>(bucket_limit, kBucketMaxMid)), keep ? std::min(cache_len / 2, kKeepMax) : 0);
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

#ifdef LESSISMORE_PHASE_CLOCKS
torch::Tensor phase_clocks() {
  auto out = torch::empty({kTimedBlocks, kPhases}, torch::kInt64);
  C10_CUDA_CHECK(cudaMemcpyFromSymbol(out.data_ptr<int64_t>(), g_phase_clocks, sizeof(g_phase_clocks)));
  return out;
}
#endif

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
#ifdef LESSISMORE_PHASE_CLOCKS
  m.def("phase_clocks", &phase_clocks, "clock64() at the end of each phase of the timed blocks (profiling build)");
#endif
  m.def("rank_keys", &rank_keys, "LessIsMore rank keys of FlashInfer's per-head top lists (CUDA)");
  m.def("rank_keys_from_logits", &rank_keys_from_logits, "LessIsMore per-head top-k and rank keys (CUDA)",
        pybind11::arg("logits"), pybind11::arg("seq_lens"), pybind11::arg("keys"), pybind11::arg("mid"),
        pybind11::arg("budget"), pybind11::arg("sinks"), pybind11::arg("recent"), pybind11::arg("total_heads"),
        pybind11::arg("head_offset"), pybind11::arg("bucket_limit") = kBucketLimit, pybind11::arg("keep") = true);
}
