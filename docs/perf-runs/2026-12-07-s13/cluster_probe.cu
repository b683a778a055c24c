// One-off probe for the next GPU session (written 2026-12-07, not yet run): why did the split ranking of
// cluster-rank-union.diff slow down with the cluster size (README.md here)? Two questions, each answered by the
// hardware alone, without the ranking code:
//  1. Placement: how many clusters of 1/2/4/8 blocks of 512 threads run at once, at the shared memory the diff's
//     launches asked for (cudaOccupancyMaxActiveClusters), and does a grid of such clusters, each block busy for
//     a fixed time, take waves x that time?
//  2. The diff's per-pass cluster work: a cluster barrier plus every block reading the other blocks' 4096-bin
//     histograms through distributed shared memory, timed per pass inside the kernel (clock64).
// Build and run on the GPU machine: nvcc -std=c++17 -arch=sm_90 -O3 -o /tmp/probe cluster_probe.cu && /tmp/probe
#include <cooperative_groups.h>
#include <cuda_runtime.h>

#include <cstdio>

namespace cg = cooperative_groups;

#define CHECK(x)                                                                          \
  do {                                                                                    \
    cudaError_t e = (x);                                                                  \
    if (e != cudaSuccess) {                                                               \
      std::printf("%s:%d %s: %s\n", __FILE__, __LINE__, #x, cudaGetErrorString(e));       \
      return 1;                                                                           \
    }                                                                                     \
  } while (0)

constexpr int kThreads = 512;  // the diff's block size
constexpr int kBins = 4096;    // its first pass's histogram

// Each block stays busy for `cycles` clock cycles (all threads), then exits: only placement decides the time.
__global__ void __launch_bounds__(kThreads, 1) busy_kernel(long long cycles, int* sink) {
  extern __shared__ int smem[];
  const long long start = clock64();
  int x = threadIdx.x;
  while (clock64() - start < cycles) x = x * 1664525 + 1013904223;
  smem[threadIdx.x] = x;
  if (x == 42) *sink = smem[(threadIdx.x + 1) % kThreads];
}

// `passes` rounds of: fill own histogram, cluster barrier, add the other blocks' histograms (DSMEM), barrier.
// Block 0 of each cluster reports the cycles per pass.
__global__ void __launch_bounds__(kThreads, 1) dsmem_pass_kernel(int passes, long long* cycles_out) {
  extern __shared__ int smem[];
  int* hist = smem;  // kBins words
  cg::cluster_group cluster = cg::this_cluster();
  const int me = static_cast<int>(cluster.block_rank()), blocks = static_cast<int>(cluster.num_blocks());
  long long start = 0;
  int total = 0;
  for (int p = 0; p < passes; ++p) {
    if (p == 1) start = clock64();  // the first pass includes the cluster's start
    for (int b = threadIdx.x; b < kBins; b += kThreads) hist[b] = b + p;
    cluster.sync();
    for (int r = 0; r < blocks; ++r) {
      if (r == me) continue;
      const int* other = cluster.map_shared_rank(hist, r);
      for (int b = threadIdx.x; b < kBins; b += kThreads) total += other[b];
    }
    cluster.sync();
  }
  if (threadIdx.x == 0 && me == 0) cycles_out[blockIdx.x / blocks] = passes > 1 ? (clock64() - start) / (passes - 1) : 0;
  if (total == 42) cycles_out[0] = -1;  // keeps the reads
}

// A launch of `blocks` blocks of kThreads in clusters of `cluster`, with `smem` bytes of dynamic shared memory; the
// attribute lives in the caller's storage.
cudaLaunchConfig_t cluster_config(int blocks, int cluster, int smem, cudaLaunchAttribute& attribute) {
  cudaLaunchConfig_t config = {};
  config.gridDim = dim3(blocks);
  config.blockDim = dim3(kThreads);
  config.dynamicSmemBytes = smem;
  attribute.id = cudaLaunchAttributeClusterDimension;
  attribute.val.clusterDim.x = cluster;
  attribute.val.clusterDim.y = attribute.val.clusterDim.z = 1;
  config.attrs = &attribute;
  config.numAttrs = 1;
  return config;
}

template <typename Kernel, typename... Args>
cudaError_t launch(Kernel kernel, int blocks, int cluster, int smem, float* ms, Args... args) {
  cudaLaunchAttribute attribute;
  const cudaLaunchConfig_t config = cluster_config(blocks, cluster, smem, attribute);
  cudaEvent_t a, b;
  cudaEventCreate(&a);
  cudaEventCreate(&b);
  cudaEventRecord(a);
  cudaError_t err = cudaLaunchKernelEx(&config, kernel, args...);
  cudaEventRecord(b);
  cudaEventSynchronize(b);
  cudaEventElapsedTime(ms, a, b);
  cudaEventDestroy(a);
  cudaEventDestroy(b);
  return err == cudaSuccess ? cudaGetLastError() : err;
}

int main() {
  cudaDeviceProp prop;
  CHECK(cudaGetDeviceProperties(&prop, 0));
  std::printf("%s: %d SMs, %d KB shared memory per block (opt-in)\n", prop.name, prop.multiProcessorCount,
              static_cast<int>(prop.sharedMemPerBlockOptin / 1024));
  int* sink;
  long long* cycles;
  CHECK(cudaMalloc(&sink, sizeof(int)));
  CHECK(cudaMalloc(&cycles, 4096 * sizeof(long long)));
  const int max_smem = static_cast<int>(prop.sharedMemPerBlockOptin);
  CHECK(cudaFuncSetAttribute(busy_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, max_smem));
  CHECK(cudaFuncSetAttribute(dsmem_pass_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, max_smem));
  int khz = 0;
  CHECK(cudaDeviceGetAttribute(&khz, cudaDevAttrClockRate, 0));
  const long long busy = static_cast<long long>(khz) * 20;  // ~20 us at the rated clock
  // 56 KB ~ the diff's s2..s8 launches at batch >= 8 (cache + extra words, beside 35 KB static), 91 KB ~ its
  // largest cache share at batch 8 with 2 blocks, 190 KB ~ its batch-1 launches with the 45056-key cap.
  for (int smem_kb : {56, 91, 190}) {
    for (int cluster : {1, 2, 4, 8}) {
      cudaLaunchAttribute attribute;
      const cudaLaunchConfig_t config = cluster_config(cluster * 64, cluster, smem_kb * 1024, attribute);
      int active = -1;
      CHECK(cudaOccupancyMaxActiveClusters(&active, busy_kernel, &config));
      std::printf("smem %3d KB cluster %d: max active clusters %3d (%3d blocks);", smem_kb, cluster, active,
                  active * cluster);
      for (int blocks : {256, 1024, 2048}) {
        float ms = 0;
        launch(busy_kernel, blocks, cluster, smem_kb * 1024, &ms, busy, sink);  // warm-up
        CHECK(launch(busy_kernel, blocks, cluster, smem_kb * 1024, &ms, busy, sink));
        const int waves = active > 0 ? (blocks / cluster + active - 1) / active : -1;
        std::printf(" %4d blocks %7.1f us (%2d waves of 20 us expected)", blocks, ms * 1e3f, waves);
      }
      float ms = 0;
      CHECK(launch(dsmem_pass_kernel, cluster * 32, cluster, kBins * 4, &ms, 8, cycles));
      long long host[32];
      CHECK(cudaMemcpy(host, cycles, sizeof(host), cudaMemcpyDeviceToHost));
      long long worst = 0;
      for (long long c : host) worst = c > worst ? c : worst;
      std::printf("; dsmem pass %lld cycles (worst of 32 clusters)\n", worst);
    }
  }
  return 0;
}
