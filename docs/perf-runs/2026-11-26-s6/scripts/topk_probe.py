import torch, triton, inspect
import flashinfer
print("flashinfer", flashinfer.__version__)
for name in ["top_k", "top_k_ragged_transform", "top_k_page_table_transform", "top_k_varlen"]:
    f = getattr(flashinfer, name, None)
    print(name, None if f is None else inspect.signature(f))
import vllm
print("vllm ops with topk:", [n for n in dir(torch.ops._C) if "top" in n.lower()] if hasattr(torch.ops, "_C") else None)
def bench(fn):
    fn(); torch.cuda.synchronize()
    g = torch.cuda.CUDAGraph()
    s = torch.cuda.Stream(); s.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(s): fn()
    torch.cuda.current_stream().wait_stream(s)
    try:
        with torch.cuda.graph(g): fn()
        return triton.testing.do_bench(g.replay, warmup=10, rep=50, return_mode="median") * 1000, "graph"
    except Exception as e:
        torch.cuda.synchronize()
        return triton.testing.do_bench(fn, warmup=10, rep=50, return_mode="median") * 1000, f"eager ({type(e).__name__})"
for rows, L in [(32, 16384), (512, 16384), (256, 32768), (1024, 32768)]:
    x = torch.randn(rows, L, device="cuda")
    for k in (1532,):
        r = []
        r.append(("torch.topk sorted", bench(lambda: torch.topk(x, k, dim=-1, sorted=True))))
        r.append(("fi.top_k sorted", bench(lambda: flashinfer.top_k(x, k, sorted=True))))
        r.append(("fi.top_k unsorted", bench(lambda: flashinfer.top_k(x, k, sorted=False))))
        if hasattr(flashinfer, "top_k_ragged_transform"):
            off = torch.zeros(rows, device="cuda", dtype=torch.int32); ln = torch.full((rows,), L, device="cuda", dtype=torch.int32)
            r.append(("fi.ragged", bench(lambda: flashinfer.top_k_ragged_transform(x, off, ln, k))))
        print(rows, L, k, " | ".join(f"{n}: {t:.1f} us {m}" for n, (t, m) in r), flush=True)
# tie behaviour
x = torch.zeros(4, 4096, device="cuda"); x[:, ::7] = 1.0
v, i = flashinfer.top_k(x, 1000, sorted=True)
print("ties: first idx", i[0, :12].tolist(), "last", i[0, -5:].tolist())
