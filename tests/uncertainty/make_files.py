"""Writes the images and std maps that tests/uncertainty.rs scores with `msm metrics --std`,
and what NumPy computes for them: an independent implementation of msm::uncertainty.

Usage: python3 make_files.py OUT_DIR

Files: ref.npy (complex64, H x W), mean.npy (complex64), std.npy (float32), the same as
volumes of two slices (ref_vol.npy, mean_vol.npy, std_vol.npy: (2, H, W)), and expected.json
(for the one image, then each slice of the volume: ratio, coverage at 1, 2, 3 predicted std,
Spearman's correlation over pixels and over 8 x 8 blocks, each over the whole image and the
object). Spearman's correlation is computed from argsort ranks with ties averaged by hand, as
scipy.stats.spearmanr does.
"""
import json
import os
import sys

import numpy as np

SAMPLES = 5
BLOCK = 8
OBJECT = 0.1


def ranks(v):
    """Ranks from 1, ties given the mean of the ranks they span."""
    order = np.argsort(v, kind="stable")
    sorted_v = v[order]
    r = np.empty(len(v))
    start = 0
    while start < len(v):
        end = start + 1
        while end < len(v) and sorted_v[end] == sorted_v[start]:
            end += 1
        r[order[start:end]] = (start + 1 + end) / 2.0
        start = end
    return r


def spearman(a, b):
    return float(np.corrcoef(ranks(a), ranks(b))[0, 1])


def region(err, pred, keep, shape):
    """The calibration figures over the pixels where `keep` is true."""
    e, p = err[keep], pred[keep]
    h, w = shape
    be, bp = [], []
    for i in range(0, h, BLOCK):
        for j in range(0, w, BLOCK):
            k = keep[i:i + BLOCK, j:j + BLOCK]
            n, size = k.sum(), k.size
            if n > 0 and 2 * n >= size:
                be.append(np.sqrt((err[i:i + BLOCK, j:j + BLOCK][k] ** 2).mean()))
                bp.append(np.sqrt((pred[i:i + BLOCK, j:j + BLOCK][k] ** 2).mean()))
    return {
        "pixels": int(keep.sum()),
        "ratio": float(np.sqrt((e ** 2).sum() / (p ** 2).sum())),
        "coverage": [float((e <= k * p).mean()) for k in (1.0, 2.0, 3.0)],
        "spearman": spearman(p, e),
        "block_spearman": spearman(np.array(bp), np.array(be)),
    }


def score(ref, mean, std):
    """What `msm metrics REF MEAN --scale --std STD --samples 5` reports."""
    ref = ref.astype(np.complex128)
    mean = mean.astype(np.complex128)
    a = np.vdot(mean, ref) / np.vdot(mean, mean)
    err = np.abs(np.abs(a * mean) - np.abs(ref))
    pred = std.astype(np.float64) * abs(a) * np.sqrt(1 + 1 / SAMPLES)
    obj = np.abs(ref) >= OBJECT * np.abs(ref).max()
    everything = np.ones(ref.shape, dtype=bool)
    return {
        "whole": region(err, pred, everything, ref.shape),
        "object": region(err, pred, obj, ref.shape),
    }


def draw(rng, h, w):
    """A reference with a dark background, posterior-like draws around it, their mean and std."""
    y, x = np.mgrid[0:h, 0:w]
    r2 = ((y - h / 2) / (0.35 * h)) ** 2 + ((x - w / 2) / (0.4 * w)) ** 2
    mag = np.where(r2 < 1, 1.0 + 0.5 * np.sin(x / 3.0) * np.cos(y / 5.0), 0.02)
    ref = (mag * np.exp(1j * 0.3 * x / w)).astype(np.complex64)
    # The samples' spread grows to the right; the truth's error is 1.5 times wider.
    sigma = 0.01 + 0.04 * x / w
    draws = ref[None] + sigma[None] * (
        rng.standard_normal((SAMPLES, h, w)) + 1j * rng.standard_normal((SAMPLES, h, w))
    ) / np.sqrt(2)
    shift = 1.5 * sigma * rng.standard_normal((h, w))
    draws = draws + shift[None]
    mean = draws.mean(0) * (0.9 - 0.2j)
    std = np.abs(draws).std(0, ddof=1)
    return ref, mean.astype(np.complex64), std.astype(np.float32)


def main():
    out = sys.argv[1]
    rng = np.random.default_rng(20261208)
    ref, mean, std = draw(rng, 40, 36)
    np.save(os.path.join(out, "ref.npy"), ref)
    np.save(os.path.join(out, "mean.npy"), mean)
    np.save(os.path.join(out, "std.npy"), std)
    slices = [draw(rng, 24, 32) for _ in range(2)]
    for k, name in enumerate(["ref_vol", "mean_vol", "std_vol"]):
        np.save(os.path.join(out, name + ".npy"), np.stack([s[k] for s in slices]))
    expected = {
        "image": score(ref, mean, std),
        "volume": [score(*s) for s in slices],
    }
    with open(os.path.join(out, "expected.json"), "w") as f:
        json.dump(expected, f)


if __name__ == "__main__":
    main()
