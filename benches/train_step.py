#!/usr/bin/env python3
"""Where a training step's time goes on the CPU, measured on the PyTorch port of msm-train
(export/gpu/train.py: the same UNet, data simulation and losses) with torch's CPU kernels, the
ones msm-train calls through libtorch.

Modes (one per process, so that a monkey-patched convolution does not leak into the next):

- `step`: seconds per noisy SURE step (batch 4, eta 0.01: three network evaluations, each
  forward and backward) in `--precision f32`, `conv-bf16` (each 2-D convolution rounds its
  input, weights and bias to bf16 and returns f32, as `msm-train --precision bf16` does) or
  `autocast` (torch's bf16 CPU autocast); `--profile` adds torch.profiler's table of the
  operators by self time.
- `batching`: one network forward and backward on 12 examples against three on 4 each (the
  three evaluations of a SURE step concatenated), seconds per 12 examples.
- `bf16-bound`: one forward and backward at batch 4 with the whole network in bf16 (weights
  and activations, under autocast): the most that keeping activations in bf16 could give.

    python3 benches/train_step.py step --precision f32 --profile
    python3 benches/train_step.py step --precision conv-bf16
    python3 benches/train_step.py batching --precision conv-bf16
    python3 benches/train_step.py bf16-bound

Needs torch and numpy (the versions export/ci.sh installs) and mricron-data.
"""

import argparse
import importlib.util
import os
import sys
import time

import torch
import torch.nn.functional as F

GPU = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "export", "gpu")
sys.path.insert(0, GPU)
_spec = importlib.util.spec_from_file_location("train", os.path.join(GPU, "train.py"))
train = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(train)

ETA = 0.01


def conv_bf16(self, x):
    """nn.Conv2d.forward as msm-train's `Conv::forward` in bf16: bf16 operands, f32 result."""
    b = self.bias.to(torch.bfloat16) if self.bias is not None else None
    w = self.weight.to(torch.bfloat16)
    return F.conv2d(x.to(torch.bfloat16), w, b, self.stride, self.padding).float()


def network(precision):
    cfg = train.default_config()
    cfg["data"]["noise_eta"] = ETA
    torch.manual_seed(0)
    if precision == "conv-bf16":
        torch.nn.Conv2d.forward = conv_bf16
    return cfg, train.UNet(cfg["unet"])


def timed(fn, reps, warmup=2):
    for i in range(warmup):
        fn(i)
    start = time.time()
    for i in range(reps):
        fn(i)
    return (time.time() - start) / reps


def step_mode(a):
    cfg, net = network(a.precision)
    sim = train.Simulator(cfg["data"], torch.device("cpu"))
    sched = train.Schedule()
    loss_fn = train.Loss(net, sched, cfg, a.precision == "autocast")
    respaced = sched.respace(cfg["respaced_steps"])
    gen = torch.Generator()
    gen.manual_seed(0)

    def step(i):
        ksp, mask = sim.batch(cfg["batch_size"], gen)
        op = train.Operator(sim.maps, mask)
        t = respaced[(37 * i) % len(respaced)]
        n = train.complex_randn(ksp.shape, ksp.device, gen)
        probe = train.complex_randn(ksp.shape, ksp.device, gen)
        net.zero_grad(set_to_none=True)
        loss_fn(op, ksp, ETA, t, n, probe).backward()

    print(f"noisy SURE step, {a.precision}: {timed(step, a.reps):.3f} s")
    if a.profile:
        from torch.profiler import ProfilerActivity, profile

        with profile(activities=[ProfilerActivity.CPU]) as prof:
            for i in range(3):
                step(i)
        print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=25))


def batching_mode(a):
    _, net = network(a.precision)
    x = torch.randn(12, 2, 128, 128)
    t = torch.randint(0, 1000, (12,)).float()

    def run(split):
        def once(_):
            net.zero_grad(set_to_none=True)
            parts = [(0, 4), (4, 8), (8, 12)] if split else [(0, 12)]
            sum((net.eps(x[i:j], t[i:j]) ** 2).mean() for i, j in parts).backward()

        return timed(once, a.reps, warmup=1)

    for split in (True, False, True, False):
        label = "3 batches of 4" if split else "1 batch of 12"
        print(f"{a.precision}, {label}: {run(split):.3f} s")


def bf16_bound_mode(a):
    _, net = network("f32")
    net = net.to(torch.bfloat16)
    x = torch.randn(4, 2, 128, 128, dtype=torch.bfloat16)
    t = torch.randint(0, 1000, (4,)).to(torch.bfloat16)

    def once(_):
        net.zero_grad(set_to_none=True)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = net.eps(x, t)
        (out.float() ** 2).mean().backward()

    print(f"whole network in bf16, one forward and backward at batch 4: {timed(once, a.reps, 1):.3f} s")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("mode", choices=["step", "batching", "bf16-bound"])
    ap.add_argument("--precision", choices=["f32", "conv-bf16", "autocast"], default="f32")
    ap.add_argument("--reps", type=int, default=4, help="timed repetitions (after a warm-up)")
    ap.add_argument("--threads", type=int, default=2, help="torch intra-op threads")
    ap.add_argument("--profile", action="store_true", help="step: print torch.profiler's table")
    a = ap.parse_args()
    if a.mode == "batching" and a.precision == "autocast":
        ap.error("batching takes --precision f32 or conv-bf16")
    torch.set_num_threads(a.threads)
    {"step": step_mode, "batching": batching_mode, "bf16-bound": bf16_bound_mode}[a.mode](a)


if __name__ == "__main__":
    main()
