"""The tools that keep a cut-off or hung GPU run diagnosable: harness.run_logged keeps the log of a process that
timed out; scripts/gpu_timeout.sh prints every Python process's stacks, then kills the whole session."""

import os
import subprocess
import sys
import time
from pathlib import Path

from lessismore_vllm.harness import run_logged

ROOT = Path(__file__).resolve().parents[1]


def test_run_logged_keeps_the_log_of_a_timed_out_process_and_ends_its_children(tmp_path):
    log, pid_file = tmp_path / "x.log", tmp_path / "child.pid"
    spawn = ("import subprocess, sys, time; print('started', flush=True); "
             "c = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)']); "
             f"open({str(pid_file)!r}, 'w').write(str(c.pid)); time.sleep(60)")
    code, text = run_logged([sys.executable, "-c", spawn], str(log), timeout=4)
    assert code is None and "started" in text and log.read_text() == text
    child = int(pid_file.read_text())
    for _ in range(50):  # the grandchild (an engine's worker, say) is gone too (or a zombie nobody reaped yet)
        status = Path(f"/proc/{child}/status")
        if not status.exists() or "State:\tZ" in status.read_text():
            break
        time.sleep(0.1)
    else:
        raise AssertionError("the timed-out process's child is still running")
    code, text = run_logged([sys.executable, "-c", "import sys; print('RESULT 1'); sys.exit(3)"])
    assert code == 3 and text.strip() == "RESULT 1"


def test_gpu_timeout_dumps_stacks_of_parent_and_child_then_kills(tmp_path):
    hook = tmp_path / "fh"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(
        "import faulthandler, signal\nfaulthandler.register(signal.SIGUSR1, all_threads=True)\n")
    env = {**os.environ, "PYTHONPATH": f"{hook}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    child = "import time\\ndef waiting_child():\\n    time.sleep(60)\\nwaiting_child()"
    parent = f"import subprocess, sys; subprocess.run([sys.executable, '-c', '{child}'])"
    t0 = time.time()
    proc = subprocess.run(["bash", str(ROOT / "scripts" / "gpu_timeout.sh"), "4", sys.executable, "-c", parent],
                          capture_output=True, text=True, env=env, timeout=60)
    assert proc.returncode == 124
    assert time.time() - t0 < 40
    assert "still running after 4 s" in proc.stderr
    assert "waiting_child" in proc.stderr  # the grandchild's stack
    assert "subprocess.py" in proc.stderr  # the parent's stack, waiting on it
    done = subprocess.run(["bash", str(ROOT / "scripts" / "gpu_timeout.sh"), "10", sys.executable, "-c",
                           "import sys; sys.exit(5)"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 5  # a command that ends in time keeps its exit status


def test_bench_e2e_compares_every_lessismore_variant_with_every_stock_backend():
    sys.path.insert(0, str(ROOT / "scripts"))
    import bench_e2e

    def run(label, tok_s):
        return {"backend": label, "configs": [{"batch": 16, "context": 16384, "decode_tok_s": tok_s}]}

    rows = bench_e2e.ratios([run("lessismore", 1500.0), run("lessismore+LESSISMORE_SPARSE_KERNEL=cuda", 1600.0),
                             run("FLASH_ATTN", 800.0), {"backend": "TRITON_ATTN", "exit": 1, "error": "..."}])
    assert [r["speedup_vs_FLASH_ATTN"] for r in rows] == [1.875, 2.0]
    assert rows[1]["lessismore+LESSISMORE_SPARSE_KERNEL=cuda_tok_s"] == 1600.0
    assert not any("speedup_vs_lessismore" in k for r in rows for k in r)  # variants are not compared to each other


def test_bench_e2e_rounds_compare_medians_and_report_the_spread():
    sys.path.insert(0, str(ROOT / "scripts"))
    import bench_e2e

    def run(label, tok_s, rnd):
        return {"backend": label, "round": rnd, "configs": [{"batch": 16, "context": 16384, "decode_tok_s": tok_s}]}

    results = [run("lessismore", 1700.0, 1), run("FLASH_ATTN", 800.0, 1), run("lessismore", 1500.0, 2),
               run("FLASH_ATTN", 840.0, 2), run("lessismore", 1600.0, 3), run("FLASH_ATTN", 820.0, 3)]
    (row,) = bench_e2e.ratios(results)
    assert row["lessismore_tok_s"] == 1600.0 and row["FLASH_ATTN_tok_s"] == 820.0  # medians, not the best run
    assert row["speedup_vs_FLASH_ATTN"] == round(1600.0 / 820.0, 3)
    assert row["lessismore_tok_s_range"] == [1500.0, 1700.0]
    assert row["FLASH_ATTN_tok_s_range"] == [800.0, 840.0]


def test_bench_e2e_plot_names_how_many_engines_each_bar_is_the_median_of(tmp_path, monkeypatch):
    """A run cut short (here FLASH_ATTN's second round never finished) plots each entry's median over the engines
    it has, and says how many that is, instead of the rounds asked for."""
    sys.path.insert(0, str(ROOT / "scripts"))
    import json

    import bench_e2e
    import matplotlib.axes

    def run(label, tok_s, rnd):
        return {"backend": label, "round": rnd, "configs": [{"batch": 1, "context": 16384, "decode_tok_s": tok_s}]}

    path = tmp_path / "bench_e2e.json"
    path.write_text(json.dumps({"rounds": 2, "device": "GPU", "vllm": "0", "budget": 2048, "results": [
        run("lessismore", 144.2, 1), run("FLASH_ATTN", 131.5, 1), run("lessismore", 142.9, 2)]}))
    labels = []
    real_bar = matplotlib.axes.Axes.bar
    monkeypatch.setattr(matplotlib.axes.Axes, "bar",
                        lambda self, *a, **k: labels.append(k["label"]) or real_bar(self, *a, **k))
    bench_e2e.plot(str(path))
    assert labels == ["lessismore (median of 2 engines)", "FLASH_ATTN (median of 1 engine)"]
    assert path.with_suffix(".png").stat().st_size > 0
