#!/usr/bin/env python3
"""Side-by-side benchmark of issue 6: the msm runtime vs onnxruntime and PyTorch, in one run.

What it measures, on one model (default the shipped models/msm-brain-128.onnx) and one
simulated 128x128 8-coil slice (`msm simulate models/examples/colin27-axial-90.npy ... --npy
--seed 1`: R = 4 random Cartesian, 20 ACS lines, no noise):

1. One network evaluation, milliseconds per image (a call on a batch of b images counts b):
   - onnxruntime on the same ONNX file: 1 and 2 intra-op threads, and 2 concurrent 1-thread
     runs (two Python threads on one session); batch 1 and batch w;
   - PyTorch (benches/torch_msm.py's UNet, weights from the same file), 1 and 2 threads, in
     NCHW and in channels-last (NHWC) memory format (the table shows the faster);
   - the msm runtime's figures (native executor and tract, 1 and 2 workers, batch 1 and w, the
     f32 matrix-product peak on 1 and 2 threads, GFLOP per pass) from
     `./target/release/msm bench --json FILE` ("not available" where that command is missing).
   Each configuration runs in its own process: --warmup evaluations, then --evals timed ones,
   the median reported, and the process's peak resident memory (wait4 rusage). The network's
   GFLOP per pass is also counted here from the ONNX graph (Conv, MatMul, Gemm), so every
   runtime's GFLOP/s can be set against the peak.
2. A whole posterior reconstruction at the same K and w (default K = 50, w = 3, 1 sample):
   `msm reconstruct` on the .npy files with RAYON_NUM_THREADS = 1 and 2, and
   `benches/torch_msm.py` with 1 and 2 threads (in the memory format that was faster at
   batch w above, --torch-format); each run in its own process, --repeats times;
   the median sampler seconds (msm: the wall time of its timing line on stderr; torch: the
   sampling loop; neither includes model loading, which is reported as process seconds), peak
   resident memory (wait4 rusage, the whole process), and PSNR against the simulation's
   reference (magnitude, peak = reference max, after least-squares complex scaling, as
   src/metrics.rs), so the speed comparison is at equal quality.
Ratios are computed pair by pair (same threads, same batch): msm / onnxruntime per evaluation
(<= 1.0: msm is as fast or faster) and PyTorch / msm per reconstruction (the speed-up).

Timings are only meaningful on an idle machine: the script refuses to time while
`msm-train train` runs or the 1-minute load average exceeds 0.5 (override with --allow-load;
the JSON then says "under_load": true).

Command (repository root; the release binary must be built):
    nice -n 0 python3 benches/compare.py --json docs/bench.json
Options: --steps K --partials w --samples N --repeats R --evals E --warmup W --model FILE
         --image FILE --workdir DIR --skip-recon --skip-eval --no-tract --torch-format
         auto|nchw|nhwc --quick (tiny settings to check that everything runs).
Requires numpy, onnx, onnxruntime, torch.
"""

import argparse
import json
import math
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
MSM = os.path.join(ROOT, "target", "release", "msm")
DEFAULT_MODEL = os.path.join(ROOT, "models", "msm-brain-128.onnx")
DEFAULT_IMAGE = os.path.join(ROOT, "models", "examples", "colin27-axial-90.npy")
NA = "not available"


# --------------------------------------------------------------------------------------------
# Child processes with their own peak RSS
# --------------------------------------------------------------------------------------------


GNU_TIME = "/usr/bin/time"


def run_child(cmd, env=None, cwd=ROOT):
    """Runs `cmd`; returns (returncode, stdout, stderr, wall seconds, peak RSS MiB) with the
    peak RSS of that command alone. The command runs under GNU time (`/usr/bin/time -f %M`,
    its "Maximum resident set size"): a child forked straight from this Python process would
    start with this process's pages (vfork), so its ru_maxrss could never be below this
    process's size. Without GNU time: os.wait4's ru_maxrss (an upper bound)."""
    full_env = dict(os.environ)
    if env:
        full_env.update(env)
    use_time = os.access(GNU_TIME, os.X_OK)
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err, \
            tempfile.NamedTemporaryFile("r", suffix=".rss") as rss_file:
        full = [GNU_TIME, "-f", "%M", "-o", rss_file.name, *cmd] if use_time else cmd
        start = time.perf_counter()
        p = subprocess.Popen(full, stdout=out, stderr=err, env=full_env, cwd=cwd)
        _, status, ru = os.wait4(p.pid, 0)
        wall = time.perf_counter() - start
        p.returncode = os.waitstatus_to_exitcode(status)
        rss = ru.ru_maxrss / 1024.0
        cpu = ru.ru_utime + ru.ru_stime
        if use_time:
            text = rss_file.read().strip().splitlines()
            try:
                rss = int(text[-1]) / 1024.0
            except (IndexError, ValueError):
                pass
        out.seek(0)
        err.seek(0)
        run_child.cpu_seconds = cpu
        return (p.returncode, out.read().decode(errors="replace"),
                err.read().decode(errors="replace"), wall, rss)


def thread_env(n):
    s = str(n)
    return {"OMP_NUM_THREADS": s, "MKL_NUM_THREADS": s, "OPENBLAS_NUM_THREADS": s}


def median(v):
    v = [x for x in v if x is not None and not (isinstance(x, float) and math.isnan(x))]
    return statistics.median(v) if v else None


# --------------------------------------------------------------------------------------------
# Network FLOPs from the ONNX graph
# --------------------------------------------------------------------------------------------


def count_gflop(model_path):
    """GFLOP of one batch-1 pass (2 per multiply-add; Conv, MatMul and Gemm only)."""
    import onnx
    from onnx import shape_inference

    m = onnx.load(model_path)
    for v in list(m.graph.input) + list(m.graph.output):
        d = v.type.tensor_type.shape.dim
        if d and not d[0].HasField("dim_value"):
            d[0].ClearField("dim_param")
            d[0].dim_value = 1
    m = shape_inference.infer_shapes(m)
    shapes = {}
    for vi in list(m.graph.value_info) + list(m.graph.input) + list(m.graph.output):
        dims = [d.dim_value if d.HasField("dim_value") else None
                for d in vi.type.tensor_type.shape.dim]
        shapes[vi.name] = dims
    for init in m.graph.initializer:
        shapes[init.name] = list(init.dims)
    flops = 0
    unknown = 0
    for n in m.graph.node:
        try:
            if n.op_type == "Conv":
                w = shapes[n.input[1]]
                o = shapes[n.output[0]]
                # weight [Cout, Cin / groups, kh, kw]
                flops += 2 * math.prod(o) * w[1] * w[2] * w[3]
            elif n.op_type == "MatMul":
                a, b = shapes[n.input[0]], shapes[n.input[1]]
                o = shapes[n.output[0]]
                k = a[-1]
                flops += 2 * math.prod(o) * k
            elif n.op_type == "Gemm":
                o = shapes[n.output[0]]
                a = shapes[n.input[0]]
                trans_a = next((x.i for x in n.attribute if x.name == "transA"), 0)
                k = a[0] if trans_a else a[-1]
                flops += 2 * math.prod(o) * k
        except (KeyError, TypeError):
            unknown += 1
    return flops / 1e9, unknown


# --------------------------------------------------------------------------------------------
# Worker: one per-evaluation configuration in its own process
# --------------------------------------------------------------------------------------------


def zero_filled_input(ksp, maps, mask, target):
    """The packed zero-filled image [1, 2, H, W] of the slice on the model's scale."""
    pat = np.broadcast_to(np.asarray(mask).reshape(1, -1) != 0, ksp.shape[1:]) \
        if np.asarray(mask).ndim == 1 or np.asarray(mask).shape[0] == 1 else np.asarray(mask) != 0
    y = ksp * pat
    ax = (-2, -1)
    coil = np.fft.fftshift(np.fft.ifft2(np.fft.ifftshift(y, axes=ax), norm="ortho"), axes=ax)
    u = np.sum(np.conj(maps) * coil, axis=0)
    if target:
        v = np.sort(np.abs(u).ravel())
        rank = min(max(int(math.ceil(0.99 * v.size)), 1), v.size) - 1
        u = u * (target / v[rank])
    return np.stack([u.real, u.imag])[None].astype(np.float32)


def worker(a):
    """One per-evaluation configuration; prints one JSON line. Loads only what its runtime
    needs (the ort worker does not import onnx or torch), so its peak RSS is that runtime's."""
    if a.worker == "ort":
        import onnxruntime as ort

        so = ort.SessionOptions()
        so.intra_op_num_threads = a.threads
        so.inter_op_num_threads = 1
        so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        sess = ort.InferenceSession(a.model, so, providers=["CPUExecutionProvider"])
        meta = sess.get_modelmeta().custom_metadata_map
        version = ort.__version__

        def call():
            sess.run(None, {"x": xb, "t": tb})
    elif a.worker == "torch":
        sys.path.insert(0, HERE)
        import torch_msm

        torch = torch_msm._torch(a.threads)
        meta, _, net = torch_msm.load_unet(a.model, a.channels_last)
        version = torch.__version__
        inputs = {}

        def call():
            with torch.inference_mode():
                net(inputs["x"], inputs["t"])
    else:
        raise SystemExit(f"unknown worker {a.worker}")
    target = float(meta["msm.scale_p99"]) if "msm.scale_p99" in meta else None
    x1 = zero_filled_input(np.load(a.w_ksp), np.load(a.w_maps), np.load(a.w_mask), target)
    xb = np.ascontiguousarray(np.repeat(x1, a.batch, axis=0))
    tb = (500.0 + np.arange(a.batch)).astype(np.float32)
    if a.worker == "torch":
        fmt = torch.channels_last if a.channels_last else torch.contiguous_format
        inputs["x"] = torch.from_numpy(xb).contiguous(memory_format=fmt)
        inputs["t"] = torch.from_numpy(tb)

    def round_():
        start = time.perf_counter()
        if a.workers == 1:
            call()
        else:
            ts = [threading.Thread(target=call) for _ in range(a.workers)]
            for t in ts:
                t.start()
            for t in ts:
                t.join()
        return (time.perf_counter() - start) / (a.workers * a.batch)

    for _ in range(a.warmup):
        round_()
    times = [round_() for _ in range(a.evals)]
    print(json.dumps({"version": version, "median_ms_per_eval": 1e3 * statistics.median(times),
                      "min_ms_per_eval": 1e3 * min(times), "evals": a.evals}))


# --------------------------------------------------------------------------------------------
# The comparison
# --------------------------------------------------------------------------------------------


def psnr(ref, img):
    """As src/metrics.rs with scale: magnitude, peak = max |ref|, LS complex scaling."""
    ref = ref.astype(np.complex128)
    img = img.astype(np.complex128)
    den = np.sum(np.abs(img) ** 2)
    a = np.sum(np.conj(img) * ref) / den if den > 0 else 1.0
    r, x = np.abs(ref), np.abs(img * a)
    return float(10 * np.log10(r.max() ** 2 / np.mean((r - x) ** 2)))


def msm_help(sub):
    if not os.path.exists(MSM):
        return None
    p = subprocess.run([MSM, sub, "--help"], capture_output=True, text=True)
    return p.stdout if p.returncode == 0 else None


def under_load():
    p = subprocess.run(["pgrep", "-f", "msm-train train"], capture_output=True, text=True)
    training = p.stdout.strip() != ""
    load1 = os.getloadavg()[0]
    return training, load1


class Interference(threading.Thread):
    """Polls every 5 s for other processes that used more than 0.25 s of CPU since the last
    poll (the training job, compilers, anything), outside this benchmark's process tree."""

    def __init__(self):
        super().__init__(daemon=True)
        self.seen = set()
        self.stop = threading.Event()
        self.tick = os.sysconf("SC_CLK_TCK")

    def cpu(self):
        out = {}
        for pid in os.listdir("/proc"):
            if not pid.isdigit():
                continue
            try:
                with open(f"/proc/{pid}/stat") as f:
                    st = f.read()
                fields = st[st.rfind(")") + 2:].split()
                # fields[1] = ppid, [11] utime, [12] stime (after the state at [0])
                out[int(pid)] = (int(fields[1]), (int(fields[11]) + int(fields[12])) / self.tick,
                                 st[st.find("(") + 1:st.rfind(")")])
            except (OSError, IndexError, ValueError):
                pass
        return out

    def ours(self, procs):
        mine = {os.getpid()}
        changed = True
        while changed:
            changed = False
            for pid, (ppid, _, _) in procs.items():
                if ppid in mine and pid not in mine:
                    mine.add(pid)
                    changed = True
        return mine

    def run(self):
        last = self.cpu()
        while not self.stop.wait(5.0):
            now = self.cpu()
            mine = self.ours(now)
            for pid, (_, t, name) in now.items():
                if pid in mine or pid not in last:
                    continue
                if t - last[pid][1] > 0.25:
                    self.seen.add(name)
            last = now


def simulate(a, prefix):
    cmd = [MSM, "simulate", a.image, prefix, "--npy", "--seed", str(a.sim_seed)]
    rc, out, err, _, _ = run_child(cmd)
    if rc != 0:
        raise SystemExit(f"msm simulate failed ({rc}):\n{err}")
    files = {k: f"{prefix}_{k}.npy" for k in ("ksp", "maps", "mask", "ref")}
    for k, f in files.items():
        if not os.path.exists(f):
            raise SystemExit(f"msm simulate did not write {f}")
    return files


def eval_figures(a, files, w, log):
    """onnxruntime and torch per-evaluation figures, each configuration in its own process."""
    rows = []
    configs = [("ort", 1, 1, False), ("ort", 2, 1, False), ("ort", 1, 2, False),
               ("torch", 1, 1, False), ("torch", 2, 1, False),
               ("torch", 1, 1, True), ("torch", 2, 1, True)]
    for kind, threads, workers, cl in configs:
        for batch in sorted({1, w}):
            cmd = [sys.executable, os.path.abspath(__file__), "--worker", kind,
                   "--threads", str(threads), "--workers", str(workers), "--batch", str(batch),
                   "--evals", str(a.evals), "--warmup", str(a.warmup), "--model", a.model,
                   "--w-ksp", files["ksp"], "--w-maps", files["maps"], "--w-mask", files["mask"]]
            if cl:
                cmd.append("--channels-last")
            log(f"network: {kind}{' channels-last' if cl else ''}, {threads} thread(s) x "
                f"{workers} worker(s), batch {batch}")
            rc, out, err, wall, rss = run_child(cmd, env=thread_env(threads))
            row = {"runtime": "onnxruntime" if kind == "ort" else "pytorch",
                   "threads": threads * workers, "intra_op_threads": threads,
                   "workers": workers, "batch": batch, "channels_last": cl,
                   "peak_rss_mib": rss}
            if rc != 0:
                row["error"] = err.strip().splitlines()[-1] if err.strip() else f"exit {rc}"
                log(f"  failed: {row['error']}")
            else:
                row.update(json.loads(out.strip().splitlines()[-1]))
            rows.append(row)
    return rows


def msm_bench(a, log):
    """Runs `msm bench --json`; returns its JSON or None."""
    help_text = msm_help("bench")
    if help_text is None:
        log(f"msm bench: not available ({MSM} has no bench subcommand)")
        return None
    path = os.path.join(a.workdir, "msm_bench.json")
    cmd = [MSM, "bench", "--json", path]
    opt = lambda flag: re.search(rf"(^|\s){re.escape(flag)}[\s,=<]", help_text) is not None
    if opt("--model"):
        cmd += ["--model", a.model]
    if opt("--image"):
        cmd += ["--image", a.image]
    if opt("--partials"):
        cmd += ["--partials", str(a.partials)]
    if opt("--repeats"):
        cmd += ["--repeats", str(max(a.evals, 3))]
    if opt("--no-recon"):
        cmd += ["--no-recon"]  # the whole reconstructions are timed here, through the CLI
    if a.no_tract and opt("--no-tract"):
        cmd += ["--no-tract"]
    log("msm bench: " + " ".join(cmd[1:]))
    rc, out, err, wall, rss = run_child(cmd)
    if rc != 0 or not os.path.exists(path):
        log(f"msm bench failed ({rc}): {err.strip()[-500:]}")
        return None
    with open(path) as f:
        j = json.load(f)
    j["_process_peak_rss_mib"] = rss
    j["_process_seconds"] = wall
    return j


def bench_rows(j):
    """Normalises `msm bench --json` network rows to
    {backend, threads, workers, batch, median_ms_per_eval, gflops}: `threads` is the pool,
    `workers` the calls at once (one call on two threads splits each layer; files from before
    that split have `workers` only, which was the pool then)."""
    rows = []
    for r in (j or {}).get("network", []):
        workers = r.get("workers", 1)
        rows.append({
            "runtime": "msm-" + str(r.get("backend", "?")),
            "backend": r.get("backend"),
            "threads": r.get("threads", workers),
            "workers": workers,
            "batch": r.get("batch"),
            "median_ms_per_eval": r.get("median_ms_per_eval"),
            "gflops": r.get("gflops"),
        })
    return rows


def recon_msm(a, files, threads, out, backend):
    cmd = [MSM, "reconstruct", files["ksp"], files["maps"], out, "--mask", files["mask"],
           "--model", a.model, "--steps", str(a.steps), "--partials", str(a.partials),
           "--samples", str(a.samples), "--seed", str(a.seed)]
    if a.final_dc_flag:
        cmd += ["--final-dc", str(a.final_dc)]
    if backend:
        cmd += ["--backend", backend]
    rc, so, se, wall, rss = run_child(cmd, env={"RAYON_NUM_THREADS": str(threads),
                                                **thread_env(threads)})
    if rc != 0:
        return {"error": se.strip()[-500:]}
    m = re.search(r"network calls in ([0-9.]+) s wall", se)
    return {"seconds": float(m.group(1)) if m else None, "process_seconds": wall,
            "process_cpu_seconds": run_child.cpu_seconds, "peak_rss_mib": rss, "timing_line": (m and se[se.rfind("\n", 0, m.start()) + 1:
                                                              se.find("\n", m.end())].strip())}


def recon_torch(a, files, threads, out, _backend=None):
    js = out + ".json"
    cmd = [sys.executable, os.path.join(HERE, "torch_msm.py"), "--model", a.model,
           "--kspace", files["ksp"], "--maps", files["maps"], "--mask", files["mask"],
           "--steps", str(a.steps), "--partials", str(a.partials), "--samples", str(a.samples),
           "--seed", str(a.seed), "--threads", str(threads), "--out", out, "--json", js,
           "--final-dc", str(a.final_dc)]
    if a.torch_nhwc.get(threads):
        cmd.append("--channels-last")
    rc, so, se, wall, rss = run_child(cmd, env=thread_env(threads))
    if rc != 0:
        return {"error": se.strip()[-500:]}
    with open(js) as f:
        j = json.load(f)
    return {"seconds": j["seconds_total"], "seconds_network": j["seconds_network"],
            "process_seconds": wall, "process_cpu_seconds": run_child.cpu_seconds,
            "peak_rss_mib": rss, "channels_last": j["channels_last"]}


def recon_figures(a, files, log):
    ref = np.load(files["ref"])
    rows = []
    runtimes = [("msm", recon_msm, b) for b in a.msm_backend.split(",")]
    runtimes.append(("pytorch", recon_torch, None))
    for runtime, fn, backend in runtimes:
        if runtime == "msm" and not os.path.exists(MSM):
            continue
        for threads in (1, 2):
            runs = []
            psnr_db = None
            for r in range(a.repeats):
                name = runtime + (f"-{backend}" if backend else "")
                out = os.path.join(a.workdir, f"recon_{name}_{threads}_{r}.npy")
                log(f"reconstruction: {name}, {threads} thread(s), run {r + 1}/{a.repeats}")
                res = fn(a, files, threads, out, backend)
                if "error" in res:
                    log(f"  failed: {res['error']}")
                    runs.append(res)
                    break
                if psnr_db is None:
                    psnr_db = psnr(ref, np.load(out))
                runs.append(res)
            ok = [r for r in runs if "error" not in r]
            row = {"runtime": runtime, "backend": backend, "threads": threads, "steps": a.steps,
                   "partials": a.partials, "samples": a.samples, "runs": len(ok),
                   "median_seconds": median([r["seconds"] for r in ok]),
                   "median_process_seconds": median([r["process_seconds"] for r in ok]),
                   "median_process_cpu_seconds": median([r["process_cpu_seconds"] for r in ok]),
                   "peak_rss_mib": median([r["peak_rss_mib"] for r in ok]),
                   "psnr_db": psnr_db, "all_seconds": [r["seconds"] for r in ok]}
            if runtime == "pytorch":
                row["channels_last"] = bool(a.torch_nhwc.get(threads))
            if len(ok) < len(runs):
                row["error"] = runs[-1]["error"]
            rows.append(row)
    return rows


def fmt(v, spec=".1f"):
    return NA if v is None else format(v, spec)


def find(rows, **kw):
    for r in rows:
        if all(r.get(k) == v for k, v in kw.items()) and r.get("median_ms_per_eval") is not None:
            return r
    return None


def ratio(a, b):
    if a is None or b is None or b == 0:
        return None
    return a / b


def report(res):
    lines = []
    m = res["machine"]
    lines.append(f"Machine: {m['cpu']}, {m['cores']} cores; onnxruntime {m.get('onnxruntime')}, "
                 f"torch {m.get('torch')}; model {res['model']} "
                 f"({fmt(res['gflop_per_pass'], '.2f')} GFLOP a pass counted from the graph"
                 + (f", {fmt(res['msm_bench'].get('network_gflop'), '.2f')} by msm bench"
                    if res.get("msm_bench") else "") + ")")
    if res.get("under_load"):
        lines.append("**WARNING: taken under load (training job or compiler running, or load "
                     "average > 0.5"
                     + (f"; seen: {', '.join(res['interference'])}" if res.get("interference")
                        else "") + "); these timings are not results.**")
    bench = res.get("msm_bench")
    if bench and bench.get("sgemm_peak_gflops"):
        p = bench["sgemm_peak_gflops"]
        lines.append(f"f32 matrix-product peak (msm bench): {fmt(p.get('1'), '.0f')} GFLOP/s on 1 "
                     f"thread, {fmt(p.get('2'), '.0f')} on 2")
    elif res.get("sgemm_peak_gflops_torch"):
        p = res["sgemm_peak_gflops_torch"]
        lines.append(f"f32 matrix-product peak (torch.mm 2048): {p['1']:.0f} GFLOP/s on 1 thread, "
                     f"{p['2']:.0f} on 2 (msm bench: {NA})")
    lines.append("")
    if res.get("eval") is not None:
        ev = res["eval"]
        ours = res.get("msm_eval", [])
        gf = res["gflop_per_pass"]
        lines.append("### One network evaluation (ms per image, median)")
        lines.append("")
        lines.append("| threads | batch | onnxruntime intra-op | onnxruntime 2 x 1-thread | "
                     "PyTorch (best format) | msm native | msm native-bf16 | msm native-fast | "
                     "msm tract | native / ort intra | native / ort best | "
                     "native-bf16 / ort best | native-fast / ort best | "
                     "native effective GFLOP/s (% of peak) |")
        lines.append("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
        peaks = (bench or {}).get("sgemm_peak_gflops") or res.get("sgemm_peak_gflops_torch") or {}
        for threads in (1, 2):
            for batch in sorted({1, res["partials"]}):
                ort_i = find(ev, runtime="onnxruntime", intra_op_threads=threads, workers=1,
                             batch=batch)
                ort_w = find(ev, runtime="onnxruntime", intra_op_threads=1, workers=2,
                             batch=batch) if threads == 2 else None
                tors = [find(ev, runtime="pytorch", intra_op_threads=threads, batch=batch,
                             channels_last=cl) for cl in (False, True)]
                tors = [r for r in tors if r]
                tor = min(tors, key=lambda r: r["median_ms_per_eval"]) if tors else None
                g = lambda r: r["median_ms_per_eval"] if r else None
                # msm on 2 threads: the better of one call split across both and two calls
                # at once, as "ort best" is for onnxruntime.
                mine = lambda b: min([r for r in ours if r["backend"] == b
                                      and r["threads"] == threads and r["batch"] == batch
                                      and r.get("median_ms_per_eval") is not None],
                                     key=g, default=None)
                nat, tra, bf = mine("native"), mine("tract"), mine("native-bf16")
                fa = mine("native-fast")
                best = min([x for x in (g(ort_i), g(ort_w)) if x is not None], default=None)
                gfs = (gf / (g(nat) / 1e3)) if (g(nat) and gf) else None
                pk = peaks.get(str(threads))
                share = f" ({100 * gfs / pk:.0f}%)" if (gfs and pk) else ""
                lines.append(
                    f"| {threads} | {batch} | {fmt(g(ort_i))} | "
                    f"{fmt(g(ort_w)) if threads == 2 else '-'} | {fmt(g(tor))} | "
                    f"{fmt(g(nat))} | {fmt(g(bf))} | {fmt(g(fa))} | {fmt(g(tra))} | "
                    f"{fmt(ratio(g(nat), g(ort_i)), '.2f')} | {fmt(ratio(g(nat), best), '.2f')} | "
                    f"{fmt(ratio(g(bf), best), '.2f')} | {fmt(ratio(g(fa), best), '.2f')} | "
                    f"{fmt(gfs, '.0f')}{share} |")
        lines.append("")
        lines.append("Effective GFLOP/s: the pass's flops as direct convolutions and matrix products "
                     "count them, over msm's time; its Winograd layers do 2.25x fewer multiplies, "
                     "so the share of the f32 peak may exceed 100%.")
        lines.append("")
        rss = {(r["runtime"], r["intra_op_threads"], r["workers"], r["batch"]): r["peak_rss_mib"]
               for r in ev}
        ort_rss = max([v for k, v in rss.items() if k[0] == "onnxruntime"], default=None)
        tor_rss = max([v for k, v in rss.items() if k[0] == "pytorch"], default=None)
        lines.append(f"Peak RSS of the per-evaluation processes (largest configuration): "
                     f"onnxruntime {fmt(ort_rss, '.0f')} MiB, PyTorch {fmt(tor_rss, '.0f')} MiB, "
                     + (f"msm bench {fmt(bench.get('peak_rss_mib'), '.0f')} MiB (its own "
                        "figure, all executors loaded)." if bench else f"msm bench {NA}."))
        lines.append("")
    if res.get("recon") is not None:
        rc = res["recon"]
        lines.append(f"### Whole posterior reconstruction (K = {res['steps']}, w = "
                     f"{res['partials']}, {res['samples']} sample(s), final CG data consistency "
                     f"{res.get('final_dc', 0)} iterations; median of "
                     f"{res['repeats']} runs)")
        lines.append("")
        lines.append(f"Zero-filled PSNR {res['psnr_zero_filled_db']:.2f} dB.")
        lines.append("")
        lines.append("| threads | msm executor | msm s | msm PSNR dB | msm peak RSS MiB | "
                     "PyTorch s | PyTorch PSNR dB | PyTorch peak RSS MiB | "
                     "speed-up (PyTorch / msm) |")
        lines.append("|---|---|---|---|---|---|---|---|---|")
        for threads in (1, 2):
            to = next((r for r in rc if r["runtime"] == "pytorch" and r["threads"] == threads), {})
            for mo in [r for r in rc if r["runtime"] == "msm" and r["threads"] == threads]:
                lines.append(
                    f"| {threads} | {mo.get('backend') or 'default'} | "
                    f"{fmt(mo.get('median_seconds'), '.2f')} | "
                    f"{fmt(mo.get('psnr_db'), '.2f')} | {fmt(mo.get('peak_rss_mib'), '.0f')} | "
                    f"{fmt(to.get('median_seconds'), '.2f')} | {fmt(to.get('psnr_db'), '.2f')} | "
                    f"{fmt(to.get('peak_rss_mib'), '.0f')} | "
                    f"{fmt(ratio(to.get('median_seconds'), mo.get('median_seconds')), '.2f')} |")
        lines.append("")
        lines.append("Seconds exclude model loading (msm: the sampler's wall time from its timing "
                     "line; PyTorch: the sampling loop); peak RSS is the whole process.")
    return "\n".join(lines)


def torch_peak():
    import torch

    out = {}
    n = 2048
    a = torch.ones(n, n)
    b = torch.full((n, n), 0.5)
    for threads in (1, 2):
        torch.set_num_threads(threads)
        torch.mm(a, b)
        ts = []
        for _ in range(5):
            s = time.perf_counter()
            torch.mm(a, b)
            ts.append(time.perf_counter() - s)
        out[str(threads)] = 2 * n**3 / statistics.median(ts) / 1e9
    return out


def machine():
    cpu = "unknown CPU"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    info = {"cpu": cpu, "cores": os.cpu_count()}
    try:
        import onnxruntime
        info["onnxruntime"] = onnxruntime.__version__
    except ImportError:
        pass
    try:
        import torch
        info["torch"] = torch.__version__
    except ImportError:
        pass
    return info


def main():
    global MSM
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=DEFAULT_MODEL)
    ap.add_argument("--image", default=DEFAULT_IMAGE, help="magnitude image for msm simulate")
    ap.add_argument("--sim-seed", type=int, default=1)
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--partials", type=int, default=3)
    ap.add_argument("--samples", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0, help="sampler seed")
    ap.add_argument("--final-dc", type=int,
                    help="CG iterations of final data consistency, for both (default: msm "
                         "reconstruct's own default when it has --final-dc, else 0)")
    ap.add_argument("--repeats", type=int, default=3, help="runs per reconstruction figure")
    ap.add_argument("--evals", type=int, default=10, help="timed evaluations per network figure")
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--msm", help="the msm binary (default target/release/msm)")
    ap.add_argument("--msm-backend", default="native,native-bf16,native-fast",
                    help="comma-separated --backend values of msm reconstruct, one row each "
                         "(native-bf16 needs bf16 units, AMX or AVX512-BF16, native-fast "
                         "AVX512-BF16; where one fails the row says why)")
    ap.add_argument("--workdir", help="keep the simulated slice and outputs here")
    ap.add_argument("--json", help="write every figure here")
    ap.add_argument("--skip-eval", action="store_true")
    ap.add_argument("--skip-recon", action="store_true")
    ap.add_argument("--no-tract", action="store_true", help="pass --no-tract to msm bench")
    ap.add_argument("--torch-format", choices=["auto", "nchw", "nhwc"], default="auto",
                    help="PyTorch memory format of the reconstructions (auto: the faster one in "
                         "the per-evaluation figures at batch w)")
    ap.add_argument("--allow-load", action="store_true",
                    help="time even while the training job runs (figures marked under_load)")
    ap.add_argument("--quick", action="store_true",
                    help="tiny settings (K = 2, 1 repeat, 2 evals) to check that it all runs")
    # Worker mode (internal).
    ap.add_argument("--worker", choices=["ort", "torch"], help=argparse.SUPPRESS)
    ap.add_argument("--threads", type=int, default=1, help=argparse.SUPPRESS)
    ap.add_argument("--workers", type=int, default=1, help=argparse.SUPPRESS)
    ap.add_argument("--batch", type=int, default=1, help=argparse.SUPPRESS)
    ap.add_argument("--w-ksp", help=argparse.SUPPRESS)
    ap.add_argument("--w-maps", help=argparse.SUPPRESS)
    ap.add_argument("--w-mask", help=argparse.SUPPRESS)
    ap.add_argument("--channels-last", action="store_true", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.worker:
        return worker(a)
    if a.quick:
        a.steps, a.repeats, a.evals, a.warmup = 2, 1, 2, 1
    if a.msm:
        MSM = os.path.abspath(a.msm)
    a.model = os.path.abspath(a.model)
    a.image = os.path.abspath(a.image)
    log = lambda s: print(s, file=sys.stderr, flush=True)

    training, load1 = under_load()
    loaded = training or load1 > 0.5
    if loaded and not a.allow_load:
        raise SystemExit(
            f"refusing to time: {'the msm-train job is running' if training else ''}"
            f"{' and ' if training and load1 > 0.5 else ''}"
            f"{f'load average {load1:.2f} > 0.5' if load1 > 0.5 else ''}; timings under load "
            "are meaningless (--allow-load to run anyway, e.g. to check that it works)")
    if loaded:
        log("WARNING: running under load; the figures are marked under_load and are not results")
    if not os.path.exists(MSM):
        raise SystemExit(f"{MSM} is missing: cargo build --release")
    tmp = None
    if a.workdir:
        os.makedirs(a.workdir, exist_ok=True)
    else:
        tmp = tempfile.mkdtemp(prefix="msm-compare-")
        a.workdir = tmp
    a.workdir = os.path.abspath(a.workdir)
    try:
        files = simulate(a, os.path.join(a.workdir, "slice"))
        gflop, unknown = count_gflop(a.model)
        res = {"model": os.path.relpath(a.model, ROOT), "machine": machine(),
               "under_load": loaded, "load_average_1min": load1, "training_running": training,
               "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
               "command": " ".join([os.path.relpath(sys.argv[0], ROOT)] + sys.argv[1:]),
               "steps": a.steps, "partials": a.partials, "samples": a.samples,
               "repeats": a.repeats, "evals": a.evals, "warmup": a.warmup,
               "gflop_per_pass": gflop, "gflop_unknown_nodes": unknown}
        ref = np.load(files["ref"])
        ksp, maps, mask = np.load(files["ksp"]), np.load(files["maps"]), np.load(files["mask"])
        pat = np.broadcast_to(mask.reshape(1, -1) != 0, ksp.shape[1:]) if mask.ndim == 1 \
            else mask != 0
        coil = np.fft.fftshift(np.fft.ifft2(np.fft.ifftshift(ksp * pat, axes=(-2, -1)),
                                            norm="ortho"), axes=(-2, -1))
        res["psnr_zero_filled_db"] = psnr(ref, np.sum(np.conj(maps) * coil, axis=0))
        watch = Interference()
        watch.start()
        if not a.skip_eval:
            bench = msm_bench(a, log)
            res["msm_bench"] = bench
            res["msm_bench_available"] = bench is not None
            res["msm_eval"] = bench_rows(bench)
            if bench is None or not bench.get("sgemm_peak_gflops"):
                res["sgemm_peak_gflops_torch"] = torch_peak()
            res["eval"] = eval_figures(a, files, a.partials, log)
        # PyTorch's memory format for the reconstructions: the faster one at batch w.
        a.torch_nhwc = {}
        for threads in (1, 2):
            if a.torch_format == "auto":
                rows = res.get("eval") or []
                f = lambda cl: find(rows, runtime="pytorch", intra_op_threads=threads,
                                    batch=a.partials, channels_last=cl)
                nchw, nhwc = f(False), f(True)
                a.torch_nhwc[threads] = bool(
                    nchw and nhwc and nhwc["median_ms_per_eval"] < nchw["median_ms_per_eval"])
            else:
                a.torch_nhwc[threads] = a.torch_format == "nhwc"
        res["torch_channels_last"] = {str(k): v for k, v in a.torch_nhwc.items()}
        if not a.skip_recon:
            help_text = msm_help("reconstruct") or ""
            a.final_dc_flag = "--final-dc" in help_text
            if a.final_dc is None:
                m = re.search(r"--final-dc[^\[]*\[default: (\d+)\]", help_text)
                a.final_dc = int(m.group(1)) if m else 0
            elif not a.final_dc_flag and a.final_dc > 0:
                raise SystemExit("msm reconstruct has no --final-dc; cannot match --final-dc")
            res["final_dc"] = a.final_dc
            res["msm_reconstruct_backends"] = a.msm_backend.split(",")
            res["recon"] = recon_figures(a, files, log)
        watch.stop.set()
        res["interference"] = sorted(watch.seen)
        if watch.seen:
            res["under_load"] = True
            log("WARNING: other heavy work ran during the measurements: "
                + "; ".join(sorted(watch.seen)))
        text = report(res)
        print(text)
        res["table_markdown"] = text
        if a.json:
            with open(a.json, "w") as f:
                json.dump(res, f, indent=2)
            log(f"wrote {a.json}")
    finally:
        if tmp:
            shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
