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
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "benches"))
from compare import DEFAULT_IMAGE, MSM, psnr, recon_msm, recon_torch, simulate  # noqa: E402


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
    a.samples, a.final_dc_flag, a.torch_nhwc = 1, True, {}
    lo, _, hi = a.seeds.partition("-")
    seeds = list(range(int(lo), int(hi or lo) + 1))
    if not os.path.exists(MSM):
        raise SystemExit(f"{MSM} not found: cargo build --release first")
    with tempfile.TemporaryDirectory() as tmp:
        # benches/compare.py's slice and its reconstruction commands (one thread each, 1
        # sample, NCHW torch), so that these PSNRs are of the runs the compare table times.
        files = simulate(a, os.path.join(tmp, "sl"))
        ref = np.load(files["ref"])

        def job(recon, name, seed):
            out = os.path.join(tmp, f"{name}{seed}.npy")
            r = recon(argparse.Namespace(**vars(a), seed=seed), files, 1, out, a.backend)
            if "error" in r:
                raise SystemExit(f"{name} reconstruction, seed {seed}, failed:\n{r['error']}")
            return psnr(ref, np.load(out))

        with ThreadPoolExecutor(max_workers=a.jobs) as pool:
            fm = [pool.submit(job, recon_msm, "msm", s) for s in seeds]
            ft = [pool.submit(job, recon_torch, "torch", s) for s in seeds]
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
