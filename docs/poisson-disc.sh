#!/usr/bin/env bash
# Poisson-disc 2-D masks against BART's `poisson` and against independent draws of the same
# density (docs/results.md, "Poisson-disc 2-D masks"). On the tuning slices 60, 70 and 110 of
# Colin27 (mricron-data), 3 mask seeds each: a noisy (std 0.01) fully sampled 8-coil
# simulation, masked by each pattern, reconstructed by CG-SENSE (5 iterations, msm recon) and
# BART l1-wavelet (pics, lambda 0.01, 30 iterations), with the simulation's true maps.
#   bart-vd          bart poisson -v at its lowest acceleration on 128 x 128 (-y 1.2 -z 1.2)
#   pd-bartdensity   msm simulate --pattern poisson-disc-2d --density-of <that BART mask>
#   vd-bartdensity   msm simulate --pattern variable-density-2d --density-of <that BART mask>
#   pd-default       poisson-disc-2d with msm's default density (1 - r)^2, same acceleration
#   vd-default       variable-density-2d with (1 - r)^2, same acceleration
#   bart-uniform     bart poisson without -v (-y 2 -z 2)
#   pd-uniform       poisson-disc-2d --density 1 at BART's uniform acceleration
#   random-2d        random-2d (independent uniform draws) at that acceleration
# Needs bart, mricron-data, python3 with numpy, and `cargo build --release`.
# Usage: bash docs/poisson-disc.sh [OUT_DIR]    (about 3 minutes on 2 cores)
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
M="$ROOT/target/release/msm"
CH2=/usr/share/mricron/templates/ch2.nii.gz
OUT=${1:-poisson-disc-results}
mkdir -p "$OUT" && cd "$OUT"
cat > cfl.py <<'PY'
import sys
import numpy as np
def read(name):
    dims = [int(x) for x in open(name + ".hdr").read().split("\n")[1].split()]
    return np.fromfile(name + ".cfl", np.complex64).reshape(dims, order="F")
def write(name, a):
    a = np.asarray(a, np.complex64)
    open(name + ".hdr", "w").write("# Dimensions\n" + " ".join(map(str, a.shape + (1,) * (16 - a.ndim))) + "\n")
    a.ravel(order="F").tofile(name + ".cfl")
def mask(name):  # [H, W] (msm) or [1, H, W] (bart poisson)
    return np.abs(read(name)).squeeze() != 0
if __name__ == "__main__":
    cmd = sys.argv[1]
    if cmd == "accel":
        print(1 / mask(sys.argv[2]).mean())
    elif cmd == "apply":  # apply MASK FULL_KSP.npy: k.npy, k.cfl, and "kept spacing" on stdout
        m = mask(sys.argv[2])
        k = np.load(sys.argv[3]) * m[None]
        np.save("k.npy", k.astype(np.complex64))
        write("k", np.transpose(k, (1, 2, 0))[:, :, None, :])
        h, w = m.shape
        outer = m.copy()
        outer[h // 2 - 20:h // 2 + 20, w // 2 - 20:w // 2 + 20] = False
        pts = np.argwhere(outer).astype(float)
        d = np.sqrt(((pts[:, None] - pts[None]) ** 2).sum(-1))
        np.fill_diagonal(d, np.inf)
        print(m.mean(), d.min(1).mean())
PY
: > rows.txt
for sl in 60 70 110; do
  "$M" simulate "$CH2" full --slice $sl --seed $((1000 + sl)) --accel 1 --acs 20 --noise 0.01 --npy > /dev/null
  for seed in 1 2 3; do
    s=$((seed + 10 * sl))
    bart poisson -Y 128 -Z 128 -y 1.2 -z 1.2 -C 20 -v -s $s m_bart-vd > /dev/null
    bart poisson -Y 128 -Z 128 -y 2 -z 2 -C 20 -s $s m_bart-uniform > /dev/null
    av=$(python3 cfl.py accel m_bart-vd)
    au=$(python3 cfl.py accel m_bart-uniform)
    sim() { # sim NAME ARGS...: an msm mask drawn with the given options
      local name=$1; shift
      "$M" simulate "$CH2" t --slice $sl --seed $((2000 + s)) --acs 20 "$@" > /dev/null
      cp t_mask.cfl "m_$name.cfl"; cp t_mask.hdr "m_$name.hdr"
    }
    sim pd-bartdensity --accel "$av" --pattern poisson-disc-2d --density-of m_bart-vd
    sim vd-bartdensity --accel "$av" --pattern variable-density-2d --density-of m_bart-vd
    sim pd-default --accel "$av" --pattern poisson-disc-2d
    sim vd-default --accel "$av" --pattern variable-density-2d
    sim pd-uniform --accel "$au" --pattern poisson-disc-2d --density 1
    sim random-2d --accel "$au" --pattern random-2d
    for p in bart-vd pd-bartdensity vd-bartdensity pd-default vd-default bart-uniform pd-uniform random-2d; do
      stats=$(python3 cfl.py apply "m_$p" full_ksp.npy)
      "$M" recon --method cg-sense --iters 5 k.npy full_maps.npy cg.npy > /dev/null
      bart pics -S -i 30 -R W:7:0:0.01 k full_maps pics > /dev/null 2>&1
      echo "$sl $seed $p $stats $("$M" metrics full_ref.npy cg.npy --scale --json) $("$M" metrics full_ref.npy pics.cfl --scale --json)" >> rows.txt
    done
  done
done
python3 - <<'PY'
import collections, json, statistics as st
rows = collections.defaultdict(list)
for line in open("rows.txt"):
    sl, seed, p, frac, nn, rest = line.split(" ", 5)
    dec = json.JSONDecoder()
    a, i = dec.raw_decode(rest)
    b, _ = dec.raw_decode(rest[i:].strip())
    rows[p].append((float(frac), float(nn), a["psnr"], a["ssim"], b["psnr"], b["ssim"]))
print("| mask | kept | mean distance to the nearest kept entry | CG-SENSE PSNR (dB) | SSIM | BART l1-wavelet PSNR (dB) | SSIM |")
print("|---|---|---|---|---|---|---|")
for p, v in rows.items():
    m = [st.mean(x[i] for x in v) for i in range(6)]
    s = [st.stdev(x[i] for x in v) for i in range(6)]
    print(f"| {p} | {m[0]:.4f} | {m[1]:.2f} | {m[2]:.2f} ({s[2]:.2f}) | {m[3]:.4f} | {m[4]:.2f} ({s[4]:.2f}) | {m[5]:.4f} |")
print()
print("Paired differences, mean (standard error), cases above 0 of", len(rows["bart-vd"]))
for a, b in [("pd-bartdensity", "bart-vd"), ("pd-uniform", "bart-uniform"),
             ("pd-bartdensity", "vd-bartdensity"), ("pd-default", "vd-default"),
             ("pd-uniform", "random-2d"), ("bart-vd", "pd-default")]:
    out = []
    for k, what in [(2, "CG-SENSE"), (4, "BART")]:
        d = [x[k] - y[k] for x, y in zip(rows[a], rows[b])]
        out.append(f"{what} {st.mean(d):+.2f} dB ({st.stdev(d) / len(d) ** 0.5:.2f}, {sum(x > 0 for x in d)}/{len(d)})")
    print(f"- {a} - {b}: " + ", ".join(out))
PY
