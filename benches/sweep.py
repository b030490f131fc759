#!/usr/bin/env python3
"""Sampler sweep on tuning slices: PSNR and seconds of MSM posterior reconstruction over the
sampling steps K, the partial scores w, the data-consistency step lambda, the DDIM eta, the
number of posterior samples averaged and the CG iterations of final data consistency. With
K = 200, w = 3 in the grid it also names the fast preset: the least time within 0.3 dB of
K = 200, w = 3 (other settings equal).

Tuning slices are training slices of Colin27 (axial 60, 70 and 110 by default: outside the
held-out block 80..99 that docs/results.md reports on), simulated by `msm simulate` (8 coils,
random Cartesian masks, R = 4 with 20 ACS lines unless --accel and --acs say otherwise, seed
per slice), reconstructed by `msm reconstruct` with the same sampler seeds (--seeds) for every
setting. PSNR as `msm demo` computes it: magnitude after the least-squares complex scaling onto
the reference, peak = the reference's maximum.

    python3 benches/sweep.py --seeds 0,1,2 --backend native-fast --json docs/fast_preset.json
                                                                     # K x w (the fast preset)
    python3 benches/sweep.py --steps 20 --partials 3 --lambdas 1,2 --samples 1,4 --json x.json
    python3 benches/sweep.py --steps 30 --samples 2 --final-dc 10,100 --maps espirit
                                     # with ESPIRiT maps from the ACS instead of the true maps

Needs a release build (target/release/msm), numpy and mricron-data. About 5 minutes on
2 cores with native-bf16, about 12 with native.
"""

import argparse
import itertools
import json
import os
import re
import subprocess
import sys
import tempfile

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MSM = os.path.join(ROOT, "target", "release", "msm")
VOLUME = "/usr/share/mricron/templates/ch2.nii.gz"


def read_cfl(prefix):
    with open(prefix + ".hdr") as f:
        lines = [l for l in f if not l.startswith("#")]
    dims = [int(d) for d in lines[0].split()]
    data = np.fromfile(prefix + ".cfl", dtype=np.complex64)
    return data.reshape(dims, order="F")


def psnr(ref, img):
    ref = np.asarray(ref, dtype=np.complex128)
    img = np.asarray(img, dtype=np.complex128)
    scale = np.vdot(img, ref) / max(np.vdot(img, img).real, 1e-30)
    err = np.abs(scale * img) - np.abs(ref)
    peak = np.abs(ref).max()
    return 10 * np.log10(peak**2 / np.mean(err**2))


def run(cmd, env=None):
    """Runs `cmd`; exits with its stderr if it fails, else returns the finished process (its
    `stdout` and `stderr` as text)."""
    p = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if p.returncode != 0:
        sys.exit(f"failed ({p.returncode}): {' '.join(cmd)}\n{p.stderr[-2000:]}")
    return p


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default=os.path.join(ROOT, "models", "msm-brain-128.onnx"))
    ap.add_argument("--volume", default=VOLUME)
    ap.add_argument("--slices", default="60,70,110", help="axial slices (not 80..99)")
    ap.add_argument("--steps", default="10,20,50,100,200")
    ap.add_argument("--partials", default="1,2,3")
    ap.add_argument("--lambdas", default="1", help="data-consistency steps")
    ap.add_argument("--etas", default="", help="DDIM eta values (default: the model's)")
    ap.add_argument("--samples", default="1", help="posterior samples averaged")
    ap.add_argument("--final-dc", default="",
                    help="CG iterations of final data consistency (default: msm's)")
    ap.add_argument("--backend", default="native-bf16")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seeds", default="0",
                    help="sampler seeds, comma-separated: each setting's PSNR is the mean over "
                         "slices x seeds (one draw's PSNR spreads by about 0.17 dB over seeds)")
    ap.add_argument("--accel", type=float, default=4.0,
                    help="acceleration R of the simulated scans")
    ap.add_argument("--acs", type=int, default=20, help="ACS lines of the simulated scans")
    ap.add_argument("--noise", type=float, default=0.0,
                    help="measurement noise std of the simulated scans (image peak 1)")
    ap.add_argument("--maps", choices=["true", "espirit"], default="true",
                    help="coil maps every reconstruction uses: the simulation's own (true) or "
                         "ESPIRiT maps estimated from the ACS by `msm ecalib` (as on real scans)")
    ap.add_argument("--crop", type=float, default=0.8,
                    help="ESPIRiT crop threshold with --maps espirit (BART's default 0.8)")
    ap.add_argument("--tolerance", type=float, default=0.3, help="dB below the reference")
    ap.add_argument("--json", help="write every figure here")
    a = ap.parse_args()
    slices = [int(s) for s in a.slices.split(",")]
    held_out = [s for s in slices if 80 <= s < 100]
    if held_out:
        sys.exit(f"slices {held_out} are held out for docs/results.md; tune on others")
    ks = [int(k) for k in a.steps.split(",")]
    ws = [int(w) for w in a.partials.split(",")]
    lams = [float(x) for x in a.lambdas.split(",")]
    etas = [float(x) for x in a.etas.split(",")] if a.etas else [None]
    ns = [int(x) for x in a.samples.split(",")]
    dcs = [int(x) for x in a.final_dc.split(",")] if a.final_dc else [None]
    seeds = [int(x) for x in a.seeds.split(",")]
    grid = list(itertools.product(ks, ws, lams, etas, ns, dcs))
    env = dict(os.environ, RAYON_NUM_THREADS=str(a.threads))
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        refs = {}
        for s in slices:
            prefix = os.path.join(tmp, f"s{s}")
            run([MSM, "simulate", a.volume, prefix, "--slice", str(s), "--accel", str(a.accel),
                 "--acs", str(a.acs), "--seed", str(1000 + s), "--noise", str(a.noise)])
            maps = prefix + "_maps"
            if a.maps == "espirit":
                maps = prefix + "_espirit"
                run([MSM, "ecalib", prefix + "_ksp.cfl", maps, "--mask", prefix + "_mask.cfl",
                     "--crop", str(a.crop)])
            refs[s] = (prefix, maps, read_cfl(prefix + "_ref").squeeze())
        for k, w, lam, eta, n, dc in grid:
            for s, seed in itertools.product(slices, seeds):
                prefix, maps, ref = refs[s]
                out = os.path.join(tmp, f"r{s}_{seed}_{k}_{w}_{lam}_{eta}_{n}_{dc}.npy")
                cmd = [MSM, "reconstruct", prefix + "_ksp", maps, out,
                       "--mask", prefix + "_mask", "--model", a.model, "--steps", str(k),
                       "--partials", str(w), "--samples", str(n), "--lambda", str(lam),
                       "--seed", str(seed), "--backend", a.backend]
                if eta is not None:
                    cmd += ["--eta", str(eta)]
                if dc is not None:
                    cmd += ["--final-dc", str(dc)]
                m = re.search(r"network calls in ([0-9.]+) s wall", run(cmd, env).stderr)
                secs = float(m.group(1)) if m else float("nan")
                rows.append({"slice": s, "seed": seed, "steps": k, "partials": w, "lambda": lam,
                             "eta": eta, "samples": n, "final_dc": dc, "seconds": secs,
                             "psnr_db": psnr(ref, np.load(out))})
                print(f"K = {k:3d}, w = {w}, lambda = {lam}, eta = {eta}, samples = {n}, "
                      f"final DC {dc}, slice {s}, seed {seed}: {rows[-1]['psnr_db']:.2f} dB, "
                      f"{secs:.1f} s",
                      file=sys.stderr)

    def seed_std(r):
        """The std of the PSNR over seeds, pooled over slices (nan with one seed)."""
        if len(seeds) < 2:
            return float("nan")
        per = [np.var([x["psnr_db"] for x in r if x["slice"] == s], ddof=1) for s in slices]
        return float(np.sqrt(np.mean(per)))

    table = []
    for k, w, lam, eta, n, dc in grid:
        r = [x for x in rows if (x["steps"], x["partials"], x["lambda"], x["eta"],
                                 x["samples"], x["final_dc"]) == (k, w, lam, eta, n, dc)]
        table.append({"steps": k, "partials": w, "lambda": lam, "eta": eta, "samples": n,
                      "final_dc": dc,
                      "psnr_db": float(np.mean([x["psnr_db"] for x in r])),
                      "psnr_seed_std_db": seed_std(r),
                      "seconds": float(np.mean([x["seconds"] for x in r]))})

    def reference(t):
        """The K = 200, w = 3 row with t's other settings."""
        return next((r for r in table if r["steps"] == 200 and r["partials"] == 3
                     and (r["lambda"], r["eta"], r["samples"], r["final_dc"])
                     == (t["lambda"], t["eta"], t["samples"], t["final_dc"])), None)

    print(f"| K | w | lambda | eta | samples | final DC | mean PSNR (dB) | "
          f"vs K = 200, w = 3 (dB) | std over seeds (dB) | "
          f"seconds per slice ({a.backend}, {a.threads} threads) |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for t in table:
        ref = reference(t)
        d = t["psnr_db"] - ref["psnr_db"] if ref else float("nan")
        t["delta_db"] = d
        eta = "model" if t["eta"] is None else t["eta"]
        dc = "default" if t["final_dc"] is None else t["final_dc"]
        print(f"| {t['steps']} | {t['partials']} | {t['lambda']} | {eta} | {t['samples']} | "
              f"{dc} | "
              f"{t['psnr_db']:.2f} | {d:+.2f} | {t['psnr_seed_std_db']:.2f} | "
              f"{t['seconds']:.1f} |")
    fast = None
    ref = reference(table[0])
    if ref and len(lams) == len(etas) == len(ns) == len(dcs) == 1:
        ok = [t for t in table if t["delta_db"] >= -a.tolerance]
        fast = min(ok, key=lambda t: (t["seconds"], t["steps"], t["partials"]))
        print(f"\nFast preset (least time within {a.tolerance} dB of K = 200, w = 3): "
              f"K = {fast['steps']}, w = {fast['partials']} ({fast['psnr_db']:.2f} dB vs "
              f"{ref['psnr_db']:.2f}; {fast['seconds']:.1f} s vs {ref['seconds']:.1f} s a slice)")
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"model": os.path.relpath(a.model, ROOT), "slices": slices,
                       "backend": a.backend, "threads": a.threads, "seeds": seeds,
                       "noise": a.noise, "accel": a.accel, "acs": a.acs,
                       "rows": rows, "table": table, "fast": fast}, f, indent=1)


if __name__ == "__main__":
    main()
