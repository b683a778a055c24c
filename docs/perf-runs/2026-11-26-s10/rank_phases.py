"""One-off (tenth session): where csrc/rank_keys.cu's rank_keys_from_logits spends its time, per phase, from
clock64() stamps that thread 0 of each block writes after each phase (an instrumented copy of the kernel, built
here; the product kernel is unchanged). Prints the median over blocks of each phase's cycles, for random logits
(as bench_kernels' cases have) at 1 x 16K / 32K and 16 x 16K."""
from pathlib import Path

import torch
from torch.utils.cpp_extension import load

src = Path("csrc/rank_keys.cu").read_text()
stamp = "  __syncthreads();\n  if (threadIdx.x == 0) g_stamps[(blockIdx.x * gridDim.y + blockIdx.y) * 8 + {i}] = clock64();\n"
src = src.replace("__global__ void __launch_bounds__(kSelectThreads, 2)",
                  "__device__ long long g_stamps[1 << 16];\n__global__ void __launch_bounds__(kSelectThreads, 2)")
marks = [
    ("  // The threshold: keys whose bits", 0),
    ("  uint32_t mask = 0xFFF00000u, prefix", 1),
    ("  // The winners in position order", 2),
    ("  // Rank order: a stable sort", 4),
    ("  SelectSort(sh.cub.sort).Sort(key, pos);\n", 5),
]
for text, i in marks:
    assert text in src, text
    if i == 5:
        src = src.replace(text, text + stamp.format(i=i))
    else:
        src = src.replace(text, stamp.format(i=i) + text)
end = "    if (rank < mid) atomicMin(keys + row * stride_kt + pos[i], rank * total_heads + head_offset + head);\n  }\n}\n"
assert end in src
head_, _, tail = src.rpartition(end)  # the last kernel's end (the first kernel ends the same way)
src = head_ + end[:-2] + stamp.format(i=6) + "}\n" + tail
src = src.replace("PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {", """torch::Tensor read_stamps(int64_t n) {
  auto out = torch::empty({n}, torch::kInt64);
  C10_CUDA_CHECK(cudaMemcpyFromSymbol(out.data_ptr<int64_t>(), g_stamps, n * sizeof(long long)));
  return out;
}
PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("read_stamps", &read_stamps);""")
out = Path("/tmp/rank_keys_timed.cu")
out.write_text(src)
ext = load(name="rank_keys_timed", sources=[str(out)], extra_cuda_cflags=["-O3", "--use_fast_math"], verbose=False)
names = ["pass 1", "passes 2-3", "compaction", "sort", "scatter"]
for rows, L in [(1, 16384), (1, 32768), (16, 16384)]:
    H = 32
    logits = torch.randn(rows, H, L, device="cuda")
    lens = torch.full((rows,), L, device="cuda", dtype=torch.int32)
    keys = torch.full((rows, L), 2**31 - 1, device="cuda", dtype=torch.int32)
    for _ in range(3):
        ext.rank_keys_from_logits(logits, lens, keys, 1536, 2048, 4, 508, H, 0)
    torch.cuda.synchronize()
    s = ext.read_stamps(rows * H * 8).view(rows * H, 8).double()
    order = [0, 1, 2, 4, 5, 6]  # stamp 3 is unused
    d = s[:, order[1:]] - s[:, order[:-1]]
    total = (s[:, 6] - s[:, 0]).median().item()
    med = d.median(dim=0).values.tolist()
    print(f"{rows} x {L}: total {total:.0f} cycles (~{total / 1.98e3:.1f} us at 1.98 GHz); "
          + ", ".join(f"{n} {v:.0f}" for n, v in zip(names, med)), flush=True)
