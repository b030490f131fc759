#!/usr/bin/env python3
"""PSNR of `msm reconstruct` and of benches/torch_msm.py over many sampler seeds: whether the
two reconstructions have equal quality (issue 6's "at equal PSNR").

Why seeds: both draw their partial masks and noise from their own generators (ChaCha8 in the
runtime, numpy and torch here), so one seed each compares two draws of a random
reconstruction, not the two implementations: on the compare slice the PSNR of one draw
spreads by about 0.17 dB (std over seeds). This script runs seeds FROM..TO on each side, on
the same simulated slice, settings and model, and prints each side's mean, standard deviation
and standard error, and the difference of the means with its standard error (Welch).

Command (repository root; the release binary must be built; torch installed):
    python3 benches/psnr_seeds.py --seeds 0-29 --backend native-fast --json /tmp/seeds.json
Each run uses one thread, and --jobs runs go at once (default 2: one per core). Timing is not
measured here (benches/compare.py does that); the machine may be busy.
"""

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "benches"))
from compare import MSM, psnr  # noqa: E402

DEFAULT_IMAGE = os.path.join(ROOT, "models", "examples", "colin27-axial-90.npy")


def run(cmd, env):
    p = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    if p.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({p.returncode}):\n{p.stderr[-2000:]}")


def summary(v):
    v = np.asarray(v, dtype=np.float64)
    sd = float(v.std(ddof=1)) if v.size > 1 else float("nan")
    return {"n": int(v.size), "mean": float(v.mean()), "std": sd,
            "se": sd / math.sqrt(v.size) if v.size > 1 else float("nan")}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", default="0-19", help="sampler seeds FROM-TO (inclusive)")
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--partials", type=int, default=3)
    ap.add_argument("--final-dc", type=int, default=10)
    ap.add_argument("--backend", default="native-fast", help="msm reconstruct --backend")
    ap.add_argument("--model", default=os.path.join(ROOT, "models", "msm-brain-128.onnx"))
    ap.add_argument("--image", default=DEFAULT_IMAGE)
    ap.add_argument("--sim-seed", type=int, default=1)
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--json", help="write every PSNR and the summary as JSON")
    a = ap.parse_args(argv)
    lo, _, hi = a.seeds.partition("-")
    seeds = list(range(int(lo), int(hi or lo) + 1))
    if not os.path.exists(MSM):
        raise SystemExit(f"{MSM} not found: cargo build --release first")
    env = dict(os.environ, RAYON_NUM_THREADS="1", OMP_NUM_THREADS="1")
    with tempfile.TemporaryDirectory() as tmp:
        sl = os.path.join(tmp, "sl")
        run([MSM, "simulate", a.image, sl, "--npy", "--seed", str(a.sim_seed)], env)
        ksp, maps, mask = (f"{sl}_{s}.npy" for s in ("ksp", "maps", "mask"))
        ref = np.load(f"{sl}_ref.npy")
        common = ["--steps", str(a.steps), "--partials", str(a.partials),
                  "--final-dc", str(a.final_dc)]

        def msm_job(seed):
            out = os.path.join(tmp, f"msm{seed}.npy")
            run([MSM, "reconstruct", ksp, maps, out, "--mask", mask, "--model", a.model,
                 "--seed", str(seed), "--backend", a.backend] + common, env)
            return psnr(ref, np.load(out))

        def torch_job(seed):
            out = os.path.join(tmp, f"torch{seed}.npy")
            run([sys.executable, os.path.join(ROOT, "benches", "torch_msm.py"), "--kspace", ksp,
                 "--maps", maps, "--mask", mask, "--model", a.model, "--threads", "1",
                 "--seed", str(seed), "--out", out] + common, env)
            return psnr(ref, np.load(out))

        with ThreadPoolExecutor(max_workers=a.jobs) as pool:
            fm = [pool.submit(msm_job, s) for s in seeds]
            ft = [pool.submit(torch_job, s) for s in seeds]
            ours = [f.result() for f in fm]
            theirs = [f.result() for f in ft]
    so, st = summary(ours), summary(theirs)
    diff = so["mean"] - st["mean"]
    se = math.sqrt(so["se"] ** 2 + st["se"] ** 2)
    res = {"seeds": seeds, "steps": a.steps, "partials": a.partials, "final_dc": a.final_dc,
           "backend": a.backend, "model": os.path.relpath(a.model, ROOT),
           "msm_psnr_db": ours, "torch_psnr_db": theirs, "msm": so, "torch": st,
           "diff_db": diff, "diff_se_db": se}
    print(f"K = {a.steps}, w = {a.partials}, final DC {a.final_dc}, seeds {seeds[0]}..{seeds[-1]}")
    print("| side | seeds | mean PSNR dB | std | standard error |")
    print("|---|---|---|---|---|")
    for name, s in ((f"msm {a.backend}", so), ("PyTorch (torch_msm.py)", st)):
        print(f"| {name} | {s['n']} | {s['mean']:.3f} | {s['std']:.3f} | {s['se']:.3f} |")
    print(f"msm - PyTorch: {diff:+.3f} dB (standard error {se:.3f} dB, {diff / se:+.1f} of it)")
    if a.json:
        with open(a.json, "w") as f:
            json.dump(res, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
