#!/usr/bin/env python3
"""MSM posterior sampling in PyTorch on the CPU: the baseline of issue 6's side-by-side benchmark.

What it is
    The same algorithm as `msm reconstruct` in its default parallel mode (src/sampler/run.rs,
    module docs in src/sampler/mod.rs), written in PyTorch, with the guided-diffusion UNet as a
    torch.nn module whose weights are read from the ONNX file's initializers (f16 `<name>.f16`
    cast to f32; q, k, v and emb_layers scale/shift already split by the exporter, see
    src/unet/emit.rs) and whose architecture comes from the model metadata `msm.unet_config`.

    Per step t (respaced t_i = i T / K, walked from the last):
      1. w column masks from a coverage-aware sampler (as src/mask.rs CoverageSampler: the ACS
         block of msm.train_acs_lines columns in every mask, round(W / msm.train_acceleration)
         columns in all, the free columns drawn among those not covered since the last full
         coverage; numpy's RNG, so the masks differ from the Rust runtime's ChaCha8 draws);
      2. u_i = A_{S_i}^H z, eps_i = UNet(u_i, t) (the w partials as one batch of w, or one call
         each with --loop), x0_i = u_i / sqrt(ab) - sqrt(1/ab - 1) eps_i, s_hat_i = A_{S_i} x0_i,
         noise estimate e_i = S_i (z - sqrt(ab) s_hat_i) / sqrt(1 - ab), then data consistency
         s_hat_i <- s_hat_i + lambda (y - s_hat_i) on S_i and P (lambda = 1: replacement);
      3. write-back merged over the masks: on covered entries z = mean_i (sqrt(ab) s_hat_i +
         sqrt(1 - ab) e_i); z_hat = mean_i s_hat_i on covered entries, others keep theirs;
      4. DDIM move from z_hat to the next level with eta (0.85).
    Output A^H z_hat (mean over --samples chains). The k-space is first multiplied so that the
    99th percentile (nearest rank) of |A_P^H y| equals msm.scale_p99, and the image is divided
    by the same factor.

What it measures (--json FILE)
    total seconds of the reconstruction (model loading excluded, reported apart), seconds inside
    the UNet forward, network calls, peak resident memory of the process
    (resource.getrusage(RUSAGE_SELF).ru_maxrss), and PSNR against --ref if given.

Commands (from the repository root)
    ./target/release/msm simulate models/examples/colin27-axial-90.npy /tmp/sl --npy --seed 1
    python3 benches/torch_msm.py --kspace /tmp/sl_ksp.npy --maps /tmp/sl_maps.npy \
        --mask /tmp/sl_mask.npy --ref /tmp/sl_ref.npy --steps 50 --partials 3 --threads 2 \
        --out /tmp/torch_recon.npy --json /tmp/torch_recon.json
    python3 benches/torch_msm.py --check-unet      # torch UNet vs onnxruntime on the same file

Requires torch, numpy, onnx (pip install onnx); --check-unet also needs onnxruntime.
"""

import argparse
import json
import math
import os
import resource
import sys
import time

import numpy as np

# The UNet layout rules shared with the GPU trainer (export/gpu/unet_layout.py).
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "export", "gpu"))
import unet_layout  # noqa: E402

DEFAULT_MODEL = "models/msm-brain-128.onnx"
GROUPS = 32


def _torch(threads=None):
    """Imports torch with the requested intra-op threads (set before any work)."""
    import torch

    if threads is not None:
        torch.set_num_threads(threads)
        try:
            torch.set_num_interop_threads(1)
        except RuntimeError:
            pass
    return torch


# --------------------------------------------------------------------------------------------
# Model file: metadata and weights
# --------------------------------------------------------------------------------------------


def load_onnx(path):
    """Returns (metadata dict, {name: f32 numpy array}) of an msm ONNX model. f16 initializers
    `<name>.f16` are cast to f32 and stored under `<name>`."""
    import onnx
    from onnx import numpy_helper

    m = onnx.load(path)
    meta = {p.key: p.value for p in m.metadata_props}
    weights = {}
    for init in m.graph.initializer:
        a = numpy_helper.to_array(init)
        name = init.name
        if name.endswith(".f16"):
            name = name[: -len(".f16")]
        if a.dtype in (np.float16, np.float32, np.float64):
            a = a.astype(np.float32)
        weights[name] = a
    return meta, weights


def unet_config(meta):
    cfg = unet_layout.default_unet()
    if "msm.unet_config" not in meta:
        raise SystemExit("model metadata has no msm.unet_config")
    cfg.update(json.loads(meta["msm.unet_config"]))
    return cfg


# --------------------------------------------------------------------------------------------
# The guided-diffusion UNet in torch.nn (layout as src/unet/layout.rs, ops as src/unet/emit.rs)
# --------------------------------------------------------------------------------------------


def layout(cfg):
    """The block layout of guided-diffusion's UNetModel (src/unet/layout.rs)."""
    mc = cfg["model_channels"]
    ch = cfg["channel_mult"][0] * mc
    inp = [[("conv", cfg["in_channels"], ch)]]
    chans = [ch]
    ds = 1
    levels = len(cfg["channel_mult"])
    for level, mult in enumerate(cfg["channel_mult"]):
        for _ in range(cfg["num_res_blocks"]):
            cout = mult * mc
            layers = [("res", ch, cout, "none")]
            ch = cout
            if unet_layout.attention_at(cfg, ds):
                layers.append(("attn", ch, unet_layout.heads(cfg, ch, False)))
            inp.append(layers)
            chans.append(ch)
        if level != levels - 1:
            if cfg["resblock_updown"]:
                inp.append([("res", ch, ch, "down")])
            else:
                inp.append([("down", ch, cfg["conv_resample"])])
            chans.append(ch)
            ds *= 2
    mid = [
        ("res", ch, ch, "none"),
        ("attn", ch, unet_layout.heads(cfg, ch, False)),
        ("res", ch, ch, "none"),
    ]
    out = []
    for level, mult in reversed(list(enumerate(cfg["channel_mult"]))):
        for i in range(cfg["num_res_blocks"] + 1):
            ich = chans.pop()
            cout = mc * mult
            layers = [("res", ch + ich, cout, "none")]
            ch = cout
            if unet_layout.attention_at(cfg, ds):
                layers.append(("attn", ch, unet_layout.heads(cfg, ch, True)))
            if level > 0 and i == cfg["num_res_blocks"]:
                if cfg["resblock_updown"]:
                    layers.append(("res", ch, ch, "up"))
                else:
                    layers.append(("up", ch, cfg["conv_resample"]))
                ds //= 2
            out.append(layers)
    return inp, mid, out, ch


def build_unet(cfg, weights):
    """A torch.nn.Module computing eps = UNet(x [N, 2, H, W], t [N]) with the given weights."""
    torch = _torch()
    import torch.nn as nn
    import torch.nn.functional as F

    used = set()

    def W(name, shape=None):
        if name not in weights:
            raise SystemExit(f"the ONNX file has no initializer `{name}` (or `{name}.f16`)")
        used.add(name)
        a = weights[name]
        if shape is not None:
            a = a.reshape(shape)
        return nn.Parameter(torch.from_numpy(np.ascontiguousarray(a)), requires_grad=False)

    class GroupNorm(nn.Module):
        def __init__(self, p, c):
            super().__init__()
            self.weight = W(f"{p}.weight", (c,))
            self.bias = W(f"{p}.bias", (c,))

        def forward(self, x):
            return F.group_norm(x, GROUPS, self.weight, self.bias, 1e-5)

    class Conv(nn.Module):
        def __init__(self, p, cin, cout, k=3, stride=1):
            super().__init__()
            self.weight = W(f"{p}.weight", (cout, cin, k, k))
            self.bias = W(f"{p}.bias", (cout,))
            self.stride = stride
            self.pad = k // 2

        def forward(self, x):
            return F.conv2d(x, self.weight, self.bias, self.stride, self.pad)

    class Linear(nn.Module):
        def __init__(self, p, suffix=""):
            super().__init__()
            self.weight = W(f"{p}.weight{suffix}")
            self.bias = W(f"{p}.bias{suffix}")

        def forward(self, x):
            return F.linear(x, self.weight, self.bias)

    def resample(x, updown):
        if updown == "up":
            return F.interpolate(x, scale_factor=2, mode="nearest")
        if updown == "down":
            return F.avg_pool2d(x, 2, 2)
        return x

    class ResBlock(nn.Module):
        def __init__(self, p, cin, cout, updown):
            super().__init__()
            self.updown = updown
            self.in_norm = GroupNorm(f"{p}.in_layers.0", cin)
            self.in_conv = Conv(f"{p}.in_layers.2", cin, cout)
            self.scale_shift = cfg["use_scale_shift_norm"]
            e = f"{p}.emb_layers.1"
            if self.scale_shift:
                self.emb_scale = Linear(e, ".scale")
                self.emb_shift = Linear(e, ".shift")
            else:
                self.emb = Linear(e)
            self.out_norm = GroupNorm(f"{p}.out_layers.0", cout)
            self.out_conv = Conv(f"{p}.out_layers.3", cout, cout)
            self.skip = None if cin == cout else Conv(f"{p}.skip_connection", cin, cout, k=1)

        def forward(self, x, emb_silu):
            h = F.silu(self.in_norm(x))
            h = resample(h, self.updown)
            xs = resample(x, self.updown)
            h = self.in_conv(h)
            if self.scale_shift:
                scale = self.emb_scale(emb_silu)[:, :, None, None]
                shift = self.emb_shift(emb_silu)[:, :, None, None]
                h = self.out_norm(h) * (1 + scale) + shift
            else:
                h = self.out_norm(h + self.emb(emb_silu)[:, :, None, None])
            h = self.out_conv(F.silu(h))
            if self.skip is not None:
                xs = self.skip(xs)
            return xs + h

    class Attention(nn.Module):
        def __init__(self, p, ch, heads):
            super().__init__()
            self.heads = heads
            self.norm = GroupNorm(f"{p}.norm", ch)
            self.q_w, self.k_w, self.v_w = (W(f"{p}.qkv.weight.{s}", (ch, ch)) for s in "qkv")
            self.q_b, self.k_b, self.v_b = (W(f"{p}.qkv.bias.{s}", (ch,)) for s in "qkv")
            self.proj_w = W(f"{p}.proj_out.weight", (ch, ch))
            self.proj_b = W(f"{p}.proj_out.bias", (ch,))

        def forward(self, x):
            n, c, hh, ww = x.shape
            t = hh * ww
            hc = c // self.heads
            flat = x.reshape(n, c, t)
            h = self.norm(flat)
            # q, k, v: [N * heads, hc, T] (rows of each already grouped per head by the exporter).
            q = (torch.matmul(self.q_w, h) + self.q_b[:, None]).reshape(n * self.heads, hc, t)
            k = (torch.matmul(self.k_w, h) + self.k_b[:, None]).reshape(n * self.heads, hc, t)
            v = (torch.matmul(self.v_w, h) + self.v_b[:, None]).reshape(n * self.heads, hc, t)
            logits = torch.bmm(q.transpose(1, 2), k) * (1.0 / math.sqrt(hc))
            wts = torch.softmax(logits, dim=-1)
            a = torch.bmm(v, wts.transpose(1, 2)).reshape(n, c, t)
            y = torch.matmul(self.proj_w, a) + self.proj_b[:, None]
            return (flat + y).reshape(n, c, hh, ww)

    class Down(nn.Module):
        def __init__(self, p, ch, conv):
            super().__init__()
            self.op = Conv(f"{p}.op", ch, ch, stride=2) if conv else None

        def forward(self, x):
            return self.op(x) if self.op is not None else F.avg_pool2d(x, 2, 2)

    class Up(nn.Module):
        def __init__(self, p, ch, conv):
            super().__init__()
            self.conv = Conv(f"{p}.conv", ch, ch) if conv else None

        def forward(self, x):
            x = F.interpolate(x, scale_factor=2, mode="nearest")
            return self.conv(x) if self.conv is not None else x

    def make(p, spec):
        kind = spec[0]
        if kind == "conv":
            return Conv(p, spec[1], spec[2])
        if kind == "res":
            return ResBlock(p, spec[1], spec[2], spec[3])
        if kind == "attn":
            return Attention(p, spec[1], spec[2])
        if kind == "down":
            return Down(p, spec[1], spec[2])
        if kind == "up":
            return Up(p, spec[1], spec[2])
        raise ValueError(kind)

    class Block(nn.Module):
        def __init__(self, p, specs):
            super().__init__()
            self.layers = nn.ModuleList(make(f"{p}.{j}", s) for j, s in enumerate(specs))

        def forward(self, x, emb_silu):
            for l in self.layers:
                x = l(x, emb_silu) if isinstance(l, ResBlock) else l(x)
            return x

    inp, mid, outb, out_ch = layout(cfg)

    class UNet(nn.Module):
        def __init__(self):
            super().__init__()
            mc = cfg["model_channels"]
            self.mc = mc
            half = mc // 2
            freqs = np.exp(-math.log(10000.0) * np.arange(half, dtype=np.float64) / half)
            self.register_buffer("freqs", torch.from_numpy(freqs.astype(np.float32)))
            self.t0 = Linear("time_embed.0")
            self.t2 = Linear("time_embed.2")
            self.input_blocks = nn.ModuleList(
                Block(f"input_blocks.{i}", b) for i, b in enumerate(inp)
            )
            self.middle_block = Block("middle_block", mid)
            self.output_blocks = nn.ModuleList(
                Block(f"output_blocks.{i}", b) for i, b in enumerate(outb)
            )
            self.out_norm = GroupNorm("out.0", out_ch)
            self.out_conv = Conv("out.2", out_ch, cfg["in_channels"])

        def forward(self, x, t):
            args = t.to(torch.float32)[:, None] * self.freqs[None, :]
            temb = torch.cat([torch.cos(args), torch.sin(args)], dim=1)
            if self.mc % 2 == 1:
                temb = F.pad(temb, (0, 1))
            emb = self.t2(F.silu(self.t0(temb)))
            emb_silu = F.silu(emb)
            hs = []
            h = x
            for b in self.input_blocks:
                h = b(h, emb_silu)
                hs.append(h)
            h = self.middle_block(h, emb_silu)
            for b in self.output_blocks:
                h = b(torch.cat([h, hs.pop()], dim=1), emb_silu)
            return self.out_conv(F.silu(self.out_norm(h)))

    net = UNet().eval()
    consts = {"time_freqs", "gn_ones", "gn_zeros", "one"}
    unused = [
        n for n in weights
        if n not in used and n not in consts and not n.startswith(("shape_", "attn_scale_"))
    ]
    if unused:
        raise SystemExit(f"ONNX initializers not used by the torch UNet: {unused[:8]}")
    return net


def load_unet(path, channels_last=False):
    """(metadata, config, UNet); with `channels_last` the convolution weights are stored NHWC
    (feed it NHWC inputs, x.contiguous(memory_format=torch.channels_last))."""
    meta, weights = load_onnx(path)
    cfg = unet_config(meta)
    net = build_unet(cfg, weights)
    if channels_last:
        net = net.to(memory_format=_torch().channels_last)
    return meta, cfg, net


# --------------------------------------------------------------------------------------------
# Operators (centred orthonormal FFT, SENSE), masks, schedule
# --------------------------------------------------------------------------------------------


def fft2c(torch, x):
    return torch.fft.fftshift(
        torch.fft.fft2(torch.fft.ifftshift(x, dim=(-2, -1)), norm="ortho"), dim=(-2, -1)
    )


def ifft2c(torch, y):
    return torch.fft.fftshift(
        torch.fft.ifft2(torch.fft.ifftshift(y, dim=(-2, -1)), norm="ortho"), dim=(-2, -1)
    )


def forward_op(torch, maps, x, mask=None):
    """A_S x: x [..., H, W] -> [..., C, H, W]; mask broadcastable to the output (or None)."""
    y = fft2c(torch, maps * x.unsqueeze(-3))
    return y if mask is None else y * mask


def adjoint_op(torch, maps, y, mask=None):
    """A_S^H y: y [..., C, H, W] -> [..., H, W]."""
    if mask is not None:
        y = y * mask
    return (maps.conj() * ifft2c(torch, y)).sum(dim=-3)


class CoverageSampler:
    """Coverage-aware column masks (src/mask.rs CoverageSampler), with numpy's RNG."""

    def __init__(self, width, accel, acs_lines, rng):
        n = min(acs_lines, width)
        pad = (width - n + 1) // 2
        self.fixed = list(range(pad, pad + n))
        if n > width / accel + 1e-9:
            raise SystemExit(f"{n} ACS lines exceed the {width / accel:.1f} lines of R = {accel}")
        total = max(int(math.floor(width / accel + 0.5)), n)
        fixed = set(self.fixed)
        self.free = [u for u in range(width) if u not in fixed]
        self.per_mask = total - n
        if self.per_mask == 0 and self.free:
            raise SystemExit("partial masks would keep only the ACS block")
        self.uncovered = list(self.free)
        self.width = width
        self.rng = rng

    def next_mask(self):
        chosen = list(self.fixed)
        need = min(self.per_mask, len(self.free))
        while need > 0:
            if not self.uncovered:
                cs = set(chosen)
                self.uncovered = [u for u in self.free if u not in cs]
            self.rng.shuffle(self.uncovered)
            take = min(need, len(self.uncovered))
            split = len(self.uncovered) - take
            chosen.extend(self.uncovered[split:])
            del self.uncovered[split:]
            need -= take
        cols = np.zeros(self.width, dtype=bool)
        cols[chosen] = True
        return cols


def alpha_bars(meta):
    T = int(meta.get("msm.num_timesteps", 1000))
    b0 = float(meta.get("msm.beta_start", 1e-4))
    b1 = float(meta.get("msm.beta_end", 0.02))
    betas = b0 + (b1 - b0) * np.arange(T, dtype=np.float64) / (T - 1)
    return np.cumprod(1.0 - betas)


def robust_max(mag):
    """99th percentile, nearest rank (src/sampler/scale.rs)."""
    v = np.sort(mag.ravel())
    rank = min(max(int(math.ceil(0.99 * v.size)), 1), v.size) - 1
    return float(v[rank])


def read_pattern(mask, kspace):
    """The acquisition pattern (H, W) bool from a mask .npy ([W], [1, W], [H, W]) or, without
    one, the non-zero entries of the k-space."""
    _, h, w = kspace.shape
    if mask is None:
        return np.any(kspace != 0, axis=0)
    m = np.asarray(mask)
    if np.iscomplexobj(m):
        m = np.abs(m)
    m = m != 0
    m = np.squeeze(m) if m.ndim > 1 and m.shape[0] == 1 else m
    if m.ndim == 1:
        if m.size != w:
            raise SystemExit(f"mask has {m.size} columns but the k-space is {w} wide")
        return np.broadcast_to(m[None, :], (h, w)).copy()
    if m.shape != (h, w):
        raise SystemExit(f"mask is {m.shape} but the k-space is {h}x{w}")
    return m


# --------------------------------------------------------------------------------------------
# The sampler (parallel mode of src/sampler/run.rs)
# --------------------------------------------------------------------------------------------


def cg_refine(torch, maps, y, acq, x0, iterations, tolerance=1e-6):
    """CG on A_P^H A_P x = A_P^H y started from x0 (src/recon.rs cg_refine, lambda 0)."""
    normal = lambda v: adjoint_op(torch, maps, forward_op(torch, maps, v, acq))
    dot = lambda a, b: float((a.conj() * b).real.double().sum())
    b = adjoint_op(torch, maps, y, acq)
    x = x0.clone()
    r = b - normal(x0)
    p = r.clone()
    rr = dot(r, r)
    stop = dot(b, b) * tolerance**2
    for _ in range(iterations):
        if rr <= stop or rr == 0.0:
            break
        ap = normal(p)
        alpha = rr / dot(p, ap)
        x = x + alpha * p
        r = r - alpha * ap
        rr_new = dot(r, r)
        p = r + (rr_new / rr) * p
        rr = rr_new
    return x


class Timer:
    def __init__(self):
        self.network = 0.0
        self.calls = 0


def reconstruct(net, meta, kspace, maps, pattern, steps=50, partials=3, eta=0.85, lam=1.0,
                seed=0, samples=1, loop=False, progress=False, oracle=None,
                channels_last=False, final_dc=0, eps_noise=0.0):
    """Posterior mean of `samples` chains; returns (image complex64 numpy (H, W), Timer,
    scale factor). With `oracle` (the clean image on the input's scale) the network is
    replaced by OracleNet. With `eps_noise` > 0, Gaussian noise of that rms relative to the
    network output's rms is added to every output (its own seeded stream): how much network
    error the reconstruction's PSNR tolerates."""
    torch = _torch()
    nc, h, w = kspace.shape
    maps_t = torch.from_numpy(maps.astype(np.complex64))
    acq = torch.from_numpy(pattern.astype(np.float32))
    y = torch.from_numpy(kspace.astype(np.complex64)) * acq
    target = float(meta["msm.scale_p99"]) if "msm.scale_p99" in meta else None
    factor = 1.0
    if target is not None:
        m = robust_max(adjoint_op(torch, maps_t, y).abs().numpy())
        if not (math.isfinite(m) and m > 0):
            raise SystemExit("cannot normalise the k-space: zero-filled p99 is not > 0")
        factor = target / m
    ys = y * factor
    ab_all = alpha_bars(meta)
    if oracle is not None:
        net = OracleNet(torch.from_numpy(oracle.astype(np.complex64)) * factor, ab_all)
    T = ab_all.size
    ts = [i * T // steps for i in range(steps)]
    accel = float(meta.get("msm.train_acceleration", 4))
    acs_lines = int(meta.get("msm.train_acs_lines", 10))
    timer = Timer()
    images = []
    for s in range(samples):
        rng = np.random.default_rng([seed, s])
        gen = torch.Generator().manual_seed(int(rng.integers(2**62)))
        eps_gen = torch.Generator().manual_seed(int(rng.integers(2**62)))
        sampler = CoverageSampler(w, accel, acs_lines, np.random.default_rng([seed, s, 1]))

        def randn():
            return torch.complex(
                torch.randn((nc, h, w), generator=gen), torch.randn((nc, h, w), generator=gen)
            )

        z = randn()
        z_hat = torch.zeros((nc, h, w), dtype=torch.complex64)
        for k in range(len(ts) - 1, -1, -1):
            t = ts[k]
            ab = float(ab_all[t])
            cols = np.stack([sampler.next_mask() for _ in range(partials)])  # [w, W]
            cols_t = torch.from_numpy(cols.astype(np.float32))
            masks = cols_t[:, None, None, :]  # [w, 1, 1, W] over (coil, H, W)
            count = cols_t.sum(0)  # [W]
            covered = count > 0
            # Partial zero-filled images and the network.
            u = adjoint_op(torch, maps_t, z.unsqueeze(0), masks)  # [w, H, W]
            x_in = torch.stack([u.real, u.imag], dim=1)  # [w, 2, H, W]
            x_in = x_in.contiguous(memory_format=torch.channels_last if channels_last
                                   else torch.contiguous_format)
            tt = torch.full((partials,), float(t))
            t0 = time.perf_counter()
            if loop:
                eps = torch.cat([net(x_in[i : i + 1], tt[i : i + 1]) for i in range(partials)])
                timer.calls += partials
            else:
                eps = net(x_in, tt)
                timer.calls += 1
            timer.network += time.perf_counter() - t0
            eps = eps.contiguous()
            if eps_noise > 0:
                scale = eps_noise * float(eps.pow(2).mean().sqrt())
                eps = eps + scale * torch.randn(eps.shape, generator=eps_gen)
            eps_c = torch.complex(eps[:, 0], eps[:, 1])
            x0 = u / math.sqrt(ab) - math.sqrt(1.0 / ab - 1.0) * eps_c
            s_hat = forward_op(torch, maps_t, x0, masks)  # [w, C, H, W]
            noise = (z.unsqueeze(0) - math.sqrt(ab) * s_hat) * masks / math.sqrt(1.0 - ab)
            keep = masks * acq  # S_i and P
            s_hat = s_hat + lam * keep * (ys.unsqueeze(0) - s_hat)
            # Merged write-back (fresh noise sig = 0): covered entries become the mean.
            inv = torch.where(covered, 1.0 / count.clamp(min=1.0), torch.zeros_like(count))
            wb = (math.sqrt(ab) * s_hat + math.sqrt(1.0 - ab) * noise).sum(0) * inv
            z = torch.where(covered, wb, z)
            z_hat = torch.where(covered, s_hat.sum(0) * inv, z_hat)
            if k > 0:
                abn = float(ab_all[ts[k - 1]])
                sd = eta * math.sqrt((1 - abn) / (1 - ab)) * math.sqrt(max(1 - ab / abn, 0.0))
                a_eps = math.sqrt(max(1 - abn - sd * sd, 0.0)) / math.sqrt(1 - ab)
                z = z_hat * math.sqrt(abn) + (z - z_hat * math.sqrt(ab)) * a_eps
                if sd > 0:
                    z = z + sd * randn()
            if progress:
                print(f"\rsample {s + 1}/{samples} step {len(ts) - k}/{len(ts)}", end="",
                      file=sys.stderr)
        image = adjoint_op(torch, maps_t, z_hat)
        if final_dc > 0:
            image = cg_refine(torch, maps_t, ys, acq, image, final_dc)
        images.append(image / factor)
    if progress:
        print(file=sys.stderr)
    img = torch.stack(images).mean(0)
    return img.numpy().astype(np.complex64), timer, factor


class OracleNet:
    """A stand-in for the UNet that knows the clean image (on the sampler's scale): it returns
    the eps for which x0 = x_true exactly. With it the sampler must return x_true (up to
    rounding): a check of the masks, write-back, aggregation, DDIM moves and scaling that does
    not depend on how well the network is trained (--check-sampler)."""

    def __init__(self, x_true, ab_all):
        self.x = x_true
        self.ab = ab_all

    def __call__(self, x_in, tt):
        torch = _torch()
        ab = torch.tensor(self.ab[tt.long().numpy()], dtype=torch.float32)[:, None, None]
        u = torch.complex(x_in[:, 0], x_in[:, 1])
        eps = (u / ab.sqrt() - self.x) / (1.0 / ab - 1.0).sqrt()
        return torch.stack([eps.real, eps.imag], dim=1)


# --------------------------------------------------------------------------------------------
# Metrics (as src/metrics.rs)
# --------------------------------------------------------------------------------------------


def psnr(ref, img, scale=True):
    """PSNR in dB on magnitudes, peak = max |ref|, optionally after least-squares complex
    scaling of img onto ref."""
    ref = ref.astype(np.complex128)
    img = img.astype(np.complex128)
    if scale:
        den = np.sum(np.abs(img) ** 2)
        a = np.sum(np.conj(img) * ref) / den if den > 0 else 1.0
        img = img * a
    r, x = np.abs(ref), np.abs(img)
    mse = np.mean((r - x) ** 2)
    return float(10 * np.log10(r.max() ** 2 / mse))


def peak_rss_mib():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


# --------------------------------------------------------------------------------------------
# --check-unet
# --------------------------------------------------------------------------------------------


def check_unet(model, threads, seed):
    """Torch UNet vs onnxruntime on the same file, batch 1 and 3; returns the worst relative
    error (max |diff| / max |ort|)."""
    torch = _torch(threads)
    import onnxruntime as ort

    meta, cfg, net = load_unet(model)
    net_cl = load_unet(model, channels_last=True)[2]
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    sess = ort.InferenceSession(model, so, providers=["CPUExecutionProvider"])
    size = cfg["image_size"]
    rng = np.random.default_rng(seed)
    worst = 0.0
    cases = [(1, [999.0]), (1, [0.0]), (3, [10.0, 500.0, 995.0])]
    for n, ts in cases:
        x = (rng.standard_normal((n, 2, size, size)) * 0.5).astype(np.float32)
        t = np.asarray(ts, dtype=np.float32)
        ref = sess.run(None, {"x": x, "t": t})[0]
        with torch.inference_mode():
            out = net(torch.from_numpy(x), torch.from_numpy(t)).numpy()
        err = float(np.max(np.abs(out - ref)) / np.max(np.abs(ref)))
        rms = float(np.sqrt(np.mean((out - ref) ** 2) / np.mean(ref**2)))
        with torch.inference_mode():
            xc = torch.from_numpy(x).contiguous(memory_format=torch.channels_last)
            out_cl = net_cl(xc, torch.from_numpy(t)).contiguous().numpy()
        err_cl = float(np.max(np.abs(out_cl - ref)) / np.max(np.abs(ref)))
        print(f"batch {n} t {ts}: max|torch - ort| / max|ort| = {err:.2e} "
              f"(channels-last {err_cl:.2e}), relative rms {rms:.2e}")
        worst = max(worst, err, err_cl)
    ok = worst < 1e-4
    print(f"check-unet: worst relative error {worst:.2e} ({'PASS' if ok else 'FAIL'} at 1e-4)")
    return ok, worst


# --------------------------------------------------------------------------------------------


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=DEFAULT_MODEL)
    ap.add_argument("--kspace", help="(coils, H, W) complex .npy (msm simulate --npy: _ksp.npy)")
    ap.add_argument("--maps", help="(coils, H, W) complex .npy coil maps")
    ap.add_argument("--mask", help="mask .npy ([W], [1, W] or [H, W]); default: non-zero k-space")
    ap.add_argument("--ref", help="reference image .npy (H, W) for the PSNR in the JSON")
    ap.add_argument("--steps", type=int, default=50, help="K (default 50)")
    ap.add_argument("--partials", type=int, default=3, help="w (default 3)")
    ap.add_argument("--eta", type=float, default=0.85)
    ap.add_argument("--lam", type=float, default=1.0, help="data-consistency lambda")
    ap.add_argument("--samples", type=int, default=1)
    ap.add_argument("--final-dc", type=int, default=0,
                    help="CG iterations of data consistency on each sample at the end (as the "
                         "runtime's ReconOptions::final_dc; 0: none)")
    ap.add_argument("--eps-noise", type=float, default=0.0,
                    help="add seeded Gaussian noise of this rms, relative to the network "
                         "output's rms, to every network output (sensitivity to network error)")
    ap.add_argument("--threads", type=int, default=1, help="torch.set_num_threads")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--loop", action="store_true",
                    help="one batch-1 network call per partial instead of one batch of w")
    ap.add_argument("--channels-last", action="store_true",
                    help="run the UNet in NHWC memory format (often faster on CPUs)")
    ap.add_argument("--out", help="write the reconstruction (H, W) complex64 .npy")
    ap.add_argument("--json", help="write timing, peak RSS and PSNR as JSON")
    ap.add_argument("--progress", action="store_true")
    ap.add_argument("--check-unet", action="store_true",
                    help="compare the torch UNet with onnxruntime on --model and exit")
    ap.add_argument("--check-sampler", action="store_true",
                    help="run the sampler with an oracle network that knows --ref (x0 = ref "
                         "exactly); it must return the reference (PSNR > 60 dB)")
    a = ap.parse_args(argv)

    if a.check_unet:
        ok, worst = check_unet(a.model, a.threads, a.seed)
        if a.json:
            with open(a.json, "w") as f:
                json.dump({"check_unet_max_rel_err": worst, "pass": ok}, f, indent=2)
        return 0 if ok else 1

    if not (a.kspace and a.maps):
        ap.error("--kspace and --maps are needed (or --check-unet)")
    if a.steps < 1 or a.partials < 1 or a.samples < 1:
        ap.error("--steps, --partials and --samples must be at least 1")
    torch = _torch(a.threads)
    t_load = time.perf_counter()
    meta, cfg, net = load_unet(a.model, a.channels_last)
    t_load = time.perf_counter() - t_load
    kspace = np.load(a.kspace)
    maps = np.load(a.maps)
    if kspace.ndim != 3 or maps.shape != kspace.shape:
        raise SystemExit(f"k-space {kspace.shape} and maps {maps.shape} must both be (coils, H, W)")
    pattern = read_pattern(np.load(a.mask) if a.mask else None, kspace)
    if a.check_sampler:
        if not a.ref:
            ap.error("--check-sampler needs --ref")
        ref = np.load(a.ref)
        img, _, _ = reconstruct(None, meta, kspace, maps, pattern, a.steps, a.partials, a.eta,
                                a.lam, a.seed, a.samples, a.loop, oracle=ref)
        p = psnr(ref, img, scale=False)
        ok = p > 60
        print(f"check-sampler: oracle network, K = {a.steps}, w = {a.partials}: PSNR {p:.1f} dB "
              f"against the reference without scaling ({'PASS' if ok else 'FAIL'} at 60 dB)")
        return 0 if ok else 1
    start = time.perf_counter()
    with torch.inference_mode():
        img, timer, factor = reconstruct(
            net, meta, kspace, maps, pattern, a.steps, a.partials, a.eta, a.lam, a.seed,
            a.samples, a.loop, a.progress, channels_last=a.channels_last,
            final_dc=a.final_dc, eps_noise=a.eps_noise)
    total = time.perf_counter() - start
    res = {
        "runtime": "pytorch",
        "torch_version": torch.__version__,
        "threads": a.threads,
        "steps": a.steps,
        "partials": a.partials,
        "samples": a.samples,
        "final_dc": a.final_dc,
        "eps_noise": a.eps_noise,
        "batched": not a.loop,
        "channels_last": a.channels_last,
        "seconds_total": total,
        "seconds_network": timer.network,
        "network_calls": timer.calls,
        "seconds_load": t_load,
        "scale_factor": factor,
        "peak_rss_mib": peak_rss_mib(),
    }
    if a.ref:
        ref = np.load(a.ref)
        zf = adjoint_op(torch, torch.from_numpy(maps.astype(np.complex64)),
                        torch.from_numpy((kspace * pattern).astype(np.complex64))).numpy()
        res["psnr_db"] = psnr(ref, img)
        res["psnr_zero_filled_db"] = psnr(ref, zf)
    if a.out:
        np.save(a.out, img)
    if a.json:
        with open(a.json, "w") as f:
            json.dump(res, f, indent=2)
    msg = (f"{a.steps} steps x {a.partials} partials, {timer.calls} network calls in "
           f"{total:.2f} s (network {timer.network:.2f} s), peak RSS {res['peak_rss_mib']:.0f} MiB")
    if "psnr_db" in res:
        msg += f", PSNR {res['psnr_db']:.2f} dB (zero-filled {res['psnr_zero_filled_db']:.2f})"
    print(msg, file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
