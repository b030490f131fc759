#!/usr/bin/env python3
"""msm-train's training loop in PyTorch, for a GPU: the same data, loss, optimizer and checkpoint.

Why it exists
    The trainer of record is `msm-train` (Rust, tch on libtorch 2.13, CPU). A GPU machine lent to
    a session has another PyTorch (no Rust toolchain, no libtorch 2.13, nothing to download), and a
    few minutes of it train more examples than hours of the 2-core CPU. This script runs the same
    training there and writes a checkpoint in msm-train's format (`msm-export checkpoint 1`:
    `__meta` JSON, `model.*`, `ema.*`, `adam_m.*`, `adam_v.*`), so that `msm-train export` freezes
    it to ONNX (scale estimate, metadata and card as for any run) and `msm-train train
    --init-from` or `--resume` continues it on the CPU.

What is the same as msm-train (export/src)
    - network: guided-diffusion UNetModel with the same parameter names and shapes
      (export/src/unet.rs; `tests/torch_trainer.rs` loads a checkpoint into both and compares);
    - data (export/src/data): Colin27 slices from the three planes (held-out axial block cut out
      before coronal and sagittal slices are taken), the occupancy filter, zoom 0.9-1.1,
      rotation, flips, gamma 0.8-1.25, smooth random phase, birdcage maps, random Cartesian masks
      with ACS, the scanner gain (zero-filled maximum 0.8-1.2), measurement noise; simulated on
      the device in batches. The draws come from torch's generator, not ChaCha8, so the examples
      differ from msm-train's while following the same distribution. Or, with `data.scans`,
      scan slices prepared by `msm-train prepare` (a .safetensors file: k-space on the model's
      grid, masks, ESPIRiT maps, noise estimates; this script has no HDF5 reader or ESPIRiT),
      checked against the config as msm-train checks them and drawn uniformly;
    - loss (export/src/loss.rs): one timestep per minibatch from the respaced steps, the
      noiseless measurement loss, or for noisy data Tweedie's correction / the pseudo-clean
      target plus the SURE term, with one noise level per example for `noise_eta` "estimate";
    - optimizer (export/src/train.rs): AdamW with bias correction, global-norm clipping, EMA
      with warm-up, the cosine learning-rate decay `lr_at`.

What differs
    - the network runs under bf16 autocast on CUDA (`--amp`; weights, optimizer, EMA and the
      measurement-domain loss in f32); on the CPU only when the config's `precision` is
      `bf16` or `--amp on` (autocast also puts the attention's products and the linear layers
      in bf16, where msm-train's `precision` covers the 2-D convolutions only); the checkpoint's
      config records `precision` as run;
    - `--time-budget S` fixes the number of steps from the step rate timed over steps 6..45
      (the config's `steps`, and a cosine decay over the last `--decay-fraction` of the run,
      are rewritten at step 45, and the checkpoint records them); `--hard-limit S` stops and
      checkpoints at S seconds whatever the count;
    - on CUDA the weights and network inputs are channels-last (`--channels-last`);
    - `--no-optimizer-state` writes zero Adam moments (for a checkpoint that must fit a small
      transfer); a CPU continuation of such a checkpoint should use `msm-train train
      --init-from`.

Usage
    python3 export/gpu/train.py --init-from RUN/checkpoint.safetensors --out OUT \
        [--config overrides.json] [--volume ch2.nii.gz] [--time-budget 420] [--device cuda]
    python3 export/gpu/train.py --resume --out OUT ...
    python3 export/gpu/train.py --split RUN/checkpoint.safetensors --weights-out PREFIX
                                          # PREFIX-ema.safetensors: a small --init-from
    python3 export/gpu/train.py --assemble PREFIX --out OUT   # the halves back into a run
    python3 export/gpu/train.py --print-config            # the full default config (JSON)

Requires torch, numpy and safetensors, and `unet_layout.py` beside this file (the layout rules
shared with benches/torch_msm.py).
"""

import argparse
import gzip
import json
import math
import os
import struct
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from unet_layout import attention_at, default_unet, heads

CHECKPOINT_FORMAT = "msm-export checkpoint 1"
GROUPS = 32
DEFAULT_VOLUME = "/usr/share/mricron/templates/ch2.nii.gz"

# --------------------------------------------------------------------------------------------
# Configuration: msm-train's TrainConfig (export/src/train.rs), DataConfig, UNetConfig defaults
# --------------------------------------------------------------------------------------------


def default_config():
    """msm-train's `TrainConfig::default()` as JSON values (checked against `msm-train
    print-config` by tests/torch_trainer.rs)."""
    return {
        "unet": default_unet(),
        "data": {
            "volume": DEFAULT_VOLUME,
            "image_size": 128,
            "image_width": None,
            "coils": 8,
            "mask": "random",
            "acceleration": 4.0,
            "acs_lines": 10,
            "noise_eta": 0.0,
            "held_out_axial": [80, 100],
            "max_rotation_deg": 10.0,
            "phase_strength": [1.0, 3.0],
            "scans": [],
            "prewhiten": True,
            # Read by `msm-train prepare` (ISMRMRD noise files); prepared scans carry their levels.
            "noise_scans": {},
            "select": {"contrast": None, "phase": None, "repetition": None, "set": None},
        },
        "steps": 20000,
        "batch_size": 4,
        "lr": 1e-4,
        "lr_final": None,
        "lr_decay_from": 0,
        "weight_decay": 0.0,
        "adam_betas": [0.9, 0.999],
        "adam_eps": 1e-8,
        "ema_decay": 0.9999,
        "ema_warmup": True,
        "grad_clip": 1.0,
        "seed": 0,
        "respaced_steps": 200,
        "sure_tau": 0.005,
        "sure_weight": 0.05,
        "checkpoint_every": 500,
        "log_every": 10,
        "precision": "f32",
        "init_from": None,
        "validation": None,
    }


def merge(base, over, where="config"):
    """`base` with the fields of `over` replaced (nested objects merged); unknown fields are an
    error, as in msm-train (`deny_unknown_fields`)."""
    out = dict(base)
    for k, v in over.items():
        if k not in base:
            raise SystemExit(f"{where}: unknown field `{k}`; expected one of {sorted(base)}")
        if isinstance(base[k], dict) and isinstance(v, dict):
            out[k] = merge(base[k], v, f"{where}.{k}")
        else:
            out[k] = v
    return out


def lr_at(cfg, k):
    """msm-train's `TrainConfig::lr_at`: `lr` up to `lr_decay_from`, then a cosine to
    `lr_final` at `steps`."""
    f = cfg["lr_final"]
    if f is not None and k > cfg["lr_decay_from"]:
        span = cfg["steps"] - cfg["lr_decay_from"]
        done = min((k - cfg["lr_decay_from"]) / span, 1.0)
        return f + 0.5 * (cfg["lr"] - f) * (1.0 + math.cos(math.pi * done))
    return cfg["lr"]


# --------------------------------------------------------------------------------------------
# Network: guided-diffusion UNetModel, parameter names as export/src/unet.rs
# --------------------------------------------------------------------------------------------


def zero_(m):
    nn.init.zeros_(m.weight)
    nn.init.zeros_(m.bias)
    return m


class ResBlock(nn.Module):
    def __init__(self, cin, cout, updown, u):
        super().__init__()
        ted = 4 * u["model_channels"]
        self.updown = updown
        self.scale_shift = u["use_scale_shift_norm"]
        self.in_layers = nn.Sequential(
            nn.GroupNorm(GROUPS, cin), nn.SiLU(), nn.Conv2d(cin, cout, 3, padding=1)
        )
        self.emb_layers = nn.Sequential(
            nn.SiLU(), nn.Linear(ted, 2 * cout if self.scale_shift else cout)
        )
        self.out_layers = nn.Sequential(
            nn.GroupNorm(GROUPS, cout),
            nn.SiLU(),
            nn.Dropout(u["dropout"]),
            zero_(nn.Conv2d(cout, cout, 3, padding=1)),
        )
        self.skip_connection = nn.Conv2d(cin, cout, 1) if cin != cout else None

    def resample(self, x):
        if self.updown == "up":
            return F.interpolate(x, scale_factor=2, mode="nearest")
        if self.updown == "down":
            return F.avg_pool2d(x, 2)
        return x

    def forward(self, x, emb):
        h = self.in_layers[1](self.in_layers[0](x))
        h = self.resample(h)
        x = self.resample(x)
        h = self.in_layers[2](h)
        e = self.emb_layers(emb)[:, :, None, None].to(h.dtype)
        if self.scale_shift:
            scale, shift = e.chunk(2, dim=1)
            h = self.out_layers[0](h) * (1 + scale) + shift
        else:
            h = self.out_layers[0](h + e)
        h = self.out_layers[3](self.out_layers[2](self.out_layers[1](h)))
        return (self.skip_connection(x) if self.skip_connection is not None else x) + h


class AttentionBlock(nn.Module):
    def __init__(self, ch, nheads, new_order):
        super().__init__()
        self.heads = nheads
        self.new_order = new_order
        self.norm = nn.GroupNorm(GROUPS, ch)
        self.qkv = nn.Conv1d(ch, 3 * ch, 1)
        self.proj_out = zero_(nn.Conv1d(ch, ch, 1))

    def forward(self, x):
        b, c = x.shape[:2]
        xf = x.reshape(b, c, -1)
        t = xf.shape[2]
        qkv = self.qkv(self.norm(xf))
        ch = c // self.heads
        if self.new_order:
            q, k, v = (p.reshape(b * self.heads, ch, t) for p in qkv.chunk(3, dim=1))
        else:
            q, k, v = qkv.reshape(b * self.heads, 3 * ch, t).split(ch, dim=1)
        # softmax(q^T k / sqrt(ch)) applied to v, as guided-diffusion's QKVAttentionLegacy.
        a = F.scaled_dot_product_attention(
            q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)
        )
        a = a.transpose(1, 2).reshape(b, c, t)
        return (xf + self.proj_out(a)).reshape(x.shape)


class Down(nn.Module):
    def __init__(self, ch, conv):
        super().__init__()
        self.op = nn.Conv2d(ch, ch, 3, stride=2, padding=1) if conv else None

    def forward(self, x):
        return self.op(x) if self.op is not None else F.avg_pool2d(x, 2)


class Up(nn.Module):
    def __init__(self, ch, conv):
        super().__init__()
        self.conv = nn.Conv2d(ch, ch, 3, padding=1) if conv else None

    def forward(self, x):
        h = F.interpolate(x, scale_factor=2, mode="nearest")
        return self.conv(h) if self.conv is not None else h


class Block(nn.ModuleList):
    def forward(self, x, emb):
        for m in self:
            x = m(x, emb) if isinstance(m, ResBlock) else m(x)
        return x


class UNet(nn.Module):
    """`forward(x [N, C, H, W], t [N]) -> [N, out_channels, H, W]` (msm::unet::layout)."""

    def __init__(self, u):
        super().__init__()
        self.u = u
        mc = u["model_channels"]
        ted = 4 * mc
        self.time_embed = nn.Sequential(nn.Linear(mc, ted), nn.SiLU(), nn.Linear(ted, ted))
        ch = u["channel_mult"][0] * mc
        blocks = [Block([nn.Conv2d(u["in_channels"], ch, 3, padding=1)])]
        chans = [ch]
        ds = 1
        levels = len(u["channel_mult"])
        for level, mult in enumerate(u["channel_mult"]):
            for _ in range(u["num_res_blocks"]):
                layers = [ResBlock(ch, mult * mc, None, u)]
                ch = mult * mc
                if attention_at(u, ds):
                    layers.append(AttentionBlock(ch, heads(u, ch, False), u["use_new_attention_order"]))
                blocks.append(Block(layers))
                chans.append(ch)
            if level != levels - 1:
                if u["resblock_updown"]:
                    blocks.append(Block([ResBlock(ch, ch, "down", u)]))
                else:
                    blocks.append(Block([Down(ch, u["conv_resample"])]))
                chans.append(ch)
                ds *= 2
        self.input_blocks = nn.ModuleList(blocks)
        self.middle_block = Block(
            [
                ResBlock(ch, ch, None, u),
                AttentionBlock(ch, heads(u, ch, False), u["use_new_attention_order"]),
                ResBlock(ch, ch, None, u),
            ]
        )
        out_blocks = []
        for level, mult in reversed(list(enumerate(u["channel_mult"]))):
            for i in range(u["num_res_blocks"] + 1):
                ich = chans.pop()
                layers = [ResBlock(ch + ich, mc * mult, None, u)]
                ch = mc * mult
                if attention_at(u, ds):
                    layers.append(AttentionBlock(ch, heads(u, ch, True), u["use_new_attention_order"]))
                if level > 0 and i == u["num_res_blocks"]:
                    if u["resblock_updown"]:
                        layers.append(ResBlock(ch, ch, "up", u))
                    else:
                        layers.append(Up(ch, u["conv_resample"]))
                    ds //= 2
                out_blocks.append(Block(layers))
        self.output_blocks = nn.ModuleList(out_blocks)
        self.out = nn.Sequential(
            nn.GroupNorm(GROUPS, ch), nn.SiLU(), zero_(nn.Conv2d(ch, u["out_channels"], 3, padding=1))
        )

    def forward(self, x, t):
        half = self.u["model_channels"] // 2
        freqs = torch.exp(
            torch.arange(half, device=x.device, dtype=torch.float32) * (-math.log(10000.0) / half)
        )
        args = t.float()[:, None] * freqs[None]
        emb = torch.cat([torch.cos(args), torch.sin(args)], dim=1)
        if self.u["model_channels"] % 2 == 1:
            emb = torch.cat([emb, torch.zeros_like(emb[:, :1])], dim=1)
        emb = self.time_embed(emb)
        hs = []
        h = x
        for b in self.input_blocks:
            h = b(h, emb)
            hs.append(h)
        h = self.middle_block(h, emb)
        for b in self.output_blocks:
            h = b(torch.cat([h, hs.pop()], dim=1), emb)
        return self.out(h)

    def eps(self, x, t):
        out = self.forward(x, t)
        return out[:, : self.u["in_channels"]]


# --------------------------------------------------------------------------------------------
# Schedule and operators (msm::schedule, export/src/operator.rs)
# --------------------------------------------------------------------------------------------


class Schedule:
    """Linear betas 1e-4..0.02 over 1000 steps (the reference), in f64."""

    def __init__(self, steps=1000, start=1e-4, end=0.02):
        betas = [start + (end - start) * i / (steps - 1) for i in range(steps)]
        ab, acc = [], 1.0
        for b in betas:
            acc *= 1.0 - b
            ab.append(acc)
        self.alpha_bar = ab

    def sigma(self, t):
        ab = self.alpha_bar[t]
        return math.sqrt((1.0 - ab) / ab)

    def timestep_for_sigma(self, s):
        return min(range(len(self.alpha_bar)), key=lambda t: abs(self.sigma(t) - s))

    def respace(self, k):
        n = len(self.alpha_bar)
        return [i * n // k for i in range(k)]


def fft2c(x):
    return torch.fft.fftshift(
        torch.fft.fft2(torch.fft.ifftshift(x, dim=(-2, -1)), norm="ortho"), dim=(-2, -1)
    )


def ifft2c(x):
    return torch.fft.fftshift(
        torch.fft.ifft2(torch.fft.ifftshift(x, dim=(-2, -1)), norm="ortho"), dim=(-2, -1)
    )


class Operator:
    """A_S with maps `[B or 1, Nc, H, W]` and column masks `[B, W]` (or masks of entries
    `[B, H, W]`, as msm-train's batches hold them)."""

    def __init__(self, maps, mask):
        self.maps = maps
        mask = mask.float()
        self.mask = mask[:, None, None, :] if mask.dim() == 2 else mask[:, None]
        # Entries per coil that each kept mask value stands for: the rows of a column.
        self.nc, self.h = maps.shape[1], maps.shape[2] // self.mask.shape[2]

    def restrict(self, y):
        return y * self.mask

    def forward(self, x):
        return fft2c(self.maps * x[:, None]) * self.mask

    def adjoint(self, y):
        return (ifft2c(y * self.mask) * self.maps.conj()).sum(dim=1)

    def measured_reals(self):
        return 2.0 * self.nc * self.h * self.mask.sum()

    def measured_reals_each(self):
        """The measured real values of each example, `[B]`."""
        return 2.0 * self.nc * self.h * self.mask.sum(dim=(1, 2, 3))


def complex_randn(shape, device, gen):
    re = torch.randn(shape, device=device, generator=gen)
    im = torch.randn(shape, device=device, generator=gen)
    return torch.complex(re, im)


def sq_norm(z):
    return (z.real.square() + z.imag.square()).sum()


# --------------------------------------------------------------------------------------------
# Data: Colin27 slices -> simulated measurements (export/src/data/sim.rs), batched on the device
# --------------------------------------------------------------------------------------------


def read_nifti(path):
    """A NIfTI-1 volume (`.nii` or `.nii.gz`) indexed `[x, y, z]`, as float32, with
    `scl_slope`/`scl_inter` applied (msm::io::nifti)."""
    with open(path, "rb") as f:
        raw = f.read()
    if raw[:2] == b"\x1f\x8b":
        raw = gzip.decompress(raw)
    if len(raw) < 348:
        raise SystemExit(f"{path}: too short for a NIfTI-1 header (348 bytes)")
    endian = "<" if struct.unpack("<i", raw[:4])[0] == 348 else ">"
    if struct.unpack(endian + "i", raw[:4])[0] != 348:
        raise SystemExit(f"{path}: not a NIfTI-1 file (sizeof_hdr is not 348)")
    dim = struct.unpack(endian + "8h", raw[40:56])
    datatype = struct.unpack(endian + "h", raw[70:72])[0]
    vox_offset = struct.unpack(endian + "f", raw[108:112])[0]
    slope, inter = struct.unpack(endian + "2f", raw[112:120])
    dtypes = {2: "u1", 256: "i1", 4: "i2", 512: "u2", 8: "i4", 16: "f4", 64: "f8"}
    if datatype not in dtypes:
        raise SystemExit(f"{path}: NIfTI datatype {datatype} not supported")
    nx, ny, nz = dim[1], dim[2], max(dim[3], 1)
    dt = np.dtype(dtypes[datatype]).newbyteorder(endian)
    off = int(vox_offset) if vox_offset >= 348 else 352
    data = np.frombuffer(raw, dtype=dt, count=nx * ny * nz, offset=off).astype(np.float32)
    if slope != 0.0 and math.isfinite(slope):
        data = data * slope + inter
    return data.reshape((nz, ny, nx)).transpose(2, 1, 0)


def display_slice(vol, plane, index):
    """msm::io::nifti::Volume::slice: axial (ny, nx), coronal (nz, nx), sagittal (nz, ny),
    top row = largest coordinate."""
    axis = {"sagittal": 0, "coronal": 1, "axial": 2}[plane]
    section = np.take(vol, index, axis=axis)
    return section.T[::-1, :]


def birdcage(nc, h, w, r=1.5):
    """msm::coils::birdcage: coils on a circle of radius 1.5 half-FOVs, sum |C|^2 = 1."""
    c = np.arange(nc)[:, None, None]
    angle = c * 2.0 * math.pi / nc
    y = np.arange(h)[None, :, None].astype(np.float64)
    x = np.arange(w)[None, None, :].astype(np.float64)
    xc = (x - w / 2.0) / (w / 2.0) - r * np.cos(angle)
    yc = (y - h / 2.0) / (h / 2.0) - r * np.sin(angle)
    rr = np.maximum(np.sqrt(xc * xc + yc * yc), 1e-6)
    phi = np.arctan2(xc, -yc) - angle
    maps = ((1.0 / rr) * np.exp(1j * phi)).astype(np.complex64)
    rss = np.sqrt((np.abs(maps) ** 2).sum(axis=0, keepdims=True))
    return maps / rss


def occupied(s):
    return (s > 0.1).mean() >= 0.15


class Simulator:
    """Training measurements from the slices of a magnitude volume, simulated in batches."""

    PLANES = ("axial", "coronal", "sagittal")

    def __init__(self, dcfg, device):
        vol = read_nifti(dcfg["volume"])
        mx = float(vol.max())
        if mx <= 0:
            raise SystemExit(f"{dcfg['volume']}: training volume is empty (all voxels <= 0)")
        vol = np.maximum(vol, 0.0) / mx
        h0, h1 = dcfg["held_out_axial"]
        nz = vol.shape[2]
        if not (h0 <= h1 <= nz):
            raise SystemExit(f"held-out axial block {h0}..{h1} is not inside the volume's {nz} axial slices")
        keep = [z for z in range(nz) if not (h0 <= z < h1)]
        excised = vol[:, :, keep]
        self.cfg = dcfg
        self.device = device
        self.stacks = []
        self.ids = []
        for plane in self.PLANES:
            src = vol if plane == "axial" else excised
            axis = {"sagittal": 0, "coronal": 1, "axial": 2}[plane]
            ids = [
                i
                for i in range(src.shape[axis])
                if not (plane == "axial" and h0 <= i < h1)
                and occupied(display_slice(src, plane, i))
            ]
            if not ids:
                raise SystemExit(f"{dcfg['volume']}: no occupied {plane} slice")
            stack = np.stack([np.ascontiguousarray(display_slice(src, plane, i)) for i in ids])
            self.stacks.append(torch.from_numpy(stack).to(device))
            self.ids.append(ids)
        n = dcfg["image_size"]
        self.maps = torch.from_numpy(birdcage(dcfg["coils"], n, n)).to(device)[None]
        acs = min(dcfg["acs_lines"], n)
        pad = (n - acs + 1) // 2
        self.acs = torch.zeros(n, dtype=torch.bool, device=device)
        self.acs[pad : pad + acs] = True
        r = dcfg["acceleration"]
        self.prob = 0.0 if acs == n else (n / r - acs) / (n - acs)

    def _warp(self, stack, idx, gen):
        """Random zoom, rotation and flips of the chosen slices onto the n x n grid (bilinear,
        zero outside; sim.rs Warp)."""
        b = idx.numel()
        dev = self.device
        n = self.cfg["image_size"]
        a_, b_ = stack.shape[1], stack.shape[2]
        u = lambda lo, hi: lo + (hi - lo) * torch.rand(b, device=dev, generator=gen, dtype=torch.float64)
        zoom = u(0.9, 1.1)
        md = self.cfg["max_rotation_deg"]
        theta = u(-md, md) * math.pi / 180.0
        flip_r = torch.where(torch.rand(b, device=dev, generator=gen) < 0.5, -1.0, 1.0).double()
        flip_c = torch.where(torch.rand(b, device=dev, generator=gen) < 0.5, -1.0, 1.0).double()
        scale = max(a_, b_) / n * zoom
        c = (n - 1) / 2.0
        g = torch.arange(n, device=dev, dtype=torch.float64) - c
        di = g[None, :, None] * (scale * flip_r)[:, None, None]
        dj = g[None, None, :] * (scale * flip_c)[:, None, None]
        cs, sn = torch.cos(theta)[:, None, None], torch.sin(theta)[:, None, None]
        y = (a_ - 1) / 2.0 + cs * di - sn * dj
        x = (b_ - 1) / 2.0 + sn * di + cs * dj
        # grid_sample with align_corners: -1 and 1 are the centres of the first and last pixels.
        grid = torch.stack([2.0 * x / (b_ - 1) - 1.0, 2.0 * y / (a_ - 1) - 1.0], dim=-1).float()
        src = stack[idx][:, None]
        return F.grid_sample(src, grid, mode="bilinear", padding_mode="zeros", align_corners=True)[:, 0]

    def batch(self, size, gen):
        """(k-space [B, Nc, n, n] complex, column masks [B, n] bool)."""
        dev = self.device
        n = self.cfg["image_size"]
        plane = torch.randint(0, 3, (size,), device=dev, generator=gen)
        images = torch.empty(size, n, n, device=dev)
        for p in range(3):
            sel = (plane == p).nonzero().flatten()
            if sel.numel() == 0:
                continue
            idx = torch.randint(0, len(self.ids[p]), (sel.numel(),), device=dev, generator=gen)
            images[sel] = self._warp(self.stacks[p], idx, gen)
        gamma = 0.8 + 0.45 * torch.rand(size, 1, 1, device=dev, generator=gen)
        images = images.clamp_min(0.0).pow(gamma)
        lo, hi = self.cfg["phase_strength"]
        strength = lo + (hi - lo) * torch.rand(size, 1, 1, device=dev, generator=gen, dtype=torch.float64)
        coef = torch.randn(size, 6, device=dev, generator=gen, dtype=torch.float64)
        offset = (2 * torch.rand(size, 1, 1, device=dev, generator=gen, dtype=torch.float64) - 1) * math.pi
        g = 2.0 * (torch.arange(n, device=dev, dtype=torch.float64) + 0.5) / n - 1.0
        yy, xx = g[None, :, None], g[None, None, :]
        a = [coef[:, i, None, None] for i in range(6)]
        raw = a[0] * xx + a[1] * yy + a[2] * xx * yy + a[3] * xx * xx + a[4] * yy * yy + 0.5 * a[5] * xx * yy * yy
        raw = raw - raw.mean(dim=(1, 2), keepdim=True)
        dev_max = raw.abs().amax(dim=(1, 2), keepdim=True)
        k = torch.where(dev_max > 0, strength / dev_max.clamp_min(1e-300), torch.zeros_like(dev_max))
        phase = (raw * k + offset).float()
        x = torch.polar(images, phase)
        draw = torch.rand(size, n, device=dev, generator=gen, dtype=torch.float64)
        mask = self.acs[None] | (draw < self.prob)
        op = Operator(self.maps, mask)
        ksp = op.forward(x)
        peak = op.adjoint(ksp).abs().amax(dim=(1, 2))
        target = 0.8 + 0.4 * torch.rand(size, device=dev, generator=gen, dtype=torch.float64)
        gain = torch.where(peak > 0, target.float() / peak.clamp_min(1e-30), torch.ones_like(peak))
        ksp = ksp * gain[:, None, None, None]
        eta = self.cfg["noise_eta"]
        if eta > 0:
            ksp = ksp + op.restrict(complex_randn(ksp.shape, dev, gen)) * eta
        return ksp, mask

    def draw(self, size, gen):
        """(k-space, masks, maps, noise std) of `size` measurements."""
        ksp, mask = self.batch(size, gen)
        return ksp, mask, self.maps, self.cfg["noise_eta"]

    def describe(self):
        return f"slices per plane {[len(i) for i in self.ids]}"


PREPARED_FORMAT = "msm-train prepared scans 1"


def central_run(mask):
    """Consecutive kept columns around the centre column (export/src/data/scans.rs)."""
    c = len(mask) // 2
    if not mask[c]:
        return 0
    left = next((i for i, k in enumerate(mask[:c][::-1]) if not k), c)
    right = next((i for i, k in enumerate(mask[c:]) if not k), len(mask) - c)
    return left + right


class PreparedScans:
    """Scan slices prepared by `msm-train prepare` (export/src/data/prepared.rs: k-space on the
    model's grid, masks, ESPIRiT maps, noise estimates), drawn uniformly; each carries its
    estimate as its noise level for `noise_eta` "estimate", else the stated one. Masks, noise
    estimates and sources are read when the files open; each minibatch's k-space and maps are
    read from the (memory-mapped) files when drawn and moved to the device, so a set larger than
    the host's or the GPU's memory trains. Checked as msm-train checks them: grid and coils, and
    the masks against `acceleration` and `acs_lines`."""

    def __init__(self, dcfg, device):
        from safetensors import safe_open

        self.cfg = dcfg
        self.device = device
        self.handles, self.index, masks, noise, self.sources = [], [], [], [], []
        for path in dcfg["scans"]:
            if not str(path).endswith(".safetensors"):
                raise SystemExit(
                    f"{path}: this trainer reads scans prepared by msm-train (a .safetensors "
                    "file); run `msm-train prepare --config C --out S.safetensors` and list "
                    "S.safetensors in data.scans"
                )
            if not os.path.exists(path):
                raise SystemExit(f"{path}: prepared scans not found")
            try:
                f = safe_open(path, framework="pt")
                meta = json.loads(bytes(f.get_tensor("__meta").numpy().tobytes()).decode())
            except Exception as e:  # noqa: BLE001 - the message names the file
                raise SystemExit(f"{path}: not a readable prepared scans file (written by msm-train prepare): {e}")
            if meta.get("format") != PREPARED_FORMAT:
                raise SystemExit(f"{path}: prepared scans format `{meta.get('format')}`, expected `{PREPARED_FORMAT}`")
            n = dcfg["image_size"]
            if (meta["height"], meta["width"], meta["coils"]) != (n, n, dcfg["coils"]):
                raise SystemExit(
                    f"{path}: prepared for a {meta['height']} x {meta['width']} grid with {meta['coils']} "
                    f"coils, but the data config says image_size {n} and coils {dcfg['coils']}; "
                    "expected the same (run `msm-train prepare` again with this config)"
                )
            self.handles.append(f)
            self.index += [(len(self.handles) - 1, i) for i in range(len(meta["sources"]))]
            masks.append(f.get_tensor("mask").bool())
            noise.append(f.get_tensor("noise").double())
            self.sources += [os.path.basename(p) for p, _ in meta["sources"]]
        self.mask = torch.cat(masks)
        self.noise = torch.cat(noise)
        rows = self.mask.numpy()
        accel = 1.0 / rows.mean()
        fewest = min(central_run(list(r)) for r in rows)
        if abs(accel - dcfg["acceleration"]) > 0.1 * dcfg["acceleration"] or fewest < dcfg["acs_lines"]:
            raise SystemExit(
                f"data config: acceleration {dcfg['acceleration']} with {dcfg['acs_lines']} ACS lines "
                f"does not describe the scans' masks (R = {accel:.2f}, fewest central columns kept "
                f"{fewest}); expected acceleration within 10% of {accel:.2f} and acs_lines at most {fewest}"
            )
        if dcfg["noise_eta"] == "estimate" and not bool((self.noise > 0).all()):
            raise SystemExit("data config: noise_eta \"estimate\", but a prepared slice's noise estimate is 0; state noise_eta as a number")

    def draw(self, size, gen):
        """(k-space, masks, maps, noise std: one number, or one per example) of `size` slices."""
        idx = torch.randint(0, len(self.noise), (size,), device=gen.device, generator=gen).cpu()

        def read(name):
            parts = []
            for k in idx.tolist():
                f, i = self.index[k]
                parts.append(self.handles[f].get_slice(name)[i])
            return torch.view_as_complex(torch.stack(parts).contiguous()).to(self.device)

        eta = self.cfg["noise_eta"]
        if eta == "estimate":
            eta = self.noise[idx].tolist()
        return read("kspace"), self.mask[idx].to(self.device), read("maps"), eta

    def describe(self):
        names = sorted(set(self.sources))
        return f"{len(self.noise)} prepared scan slices of {len(names)} file(s)"


# --------------------------------------------------------------------------------------------
# Loss (export/src/loss.rs)
# --------------------------------------------------------------------------------------------


class Loss:
    def __init__(self, net, sched, cfg, amp, channels_last=False):
        self.net = net
        self.sched = sched
        self.cfg = cfg
        self.amp = amp
        self.channels_last = channels_last
        self.t_eta = {}

    def x0(self, u, t):
        """x0 from the network at step `t`: one step for the batch, or a list of one step per
        example (loss.rs `net_x0` / `net_x0_each`)."""
        steps = [t] * u.shape[0] if isinstance(t, int) else list(t)
        ab = torch.tensor([self.sched.alpha_bar[k] for k in steps], dtype=torch.float64)
        tt = torch.tensor([float(k) for k in steps], device=u.device)
        inp = torch.view_as_real(u).permute(0, 3, 1, 2)
        inp = inp.contiguous(memory_format=torch.channels_last if self.channels_last else torch.contiguous_format)
        with torch.autocast(u.device.type, dtype=torch.bfloat16, enabled=self.amp):
            eps = self.net.eps(inp, tt)
        eps = eps.float()
        inv_root = (1.0 / ab.sqrt()).float().to(u.device)[:, None, None]
        noise = (1.0 / ab - 1.0).sqrt().float().to(u.device)[:, None, None]
        return u * inv_root - torch.complex(eps[:, 0], eps[:, 1]) * noise

    def __call__(self, op, ksp, eta, t, n, probe):
        """The loss at step `t` with diffusion noise `n` and SURE probe `probe` (complex
        standard Gaussian, shaped like `ksp`; the probe is used for noisy data only). `eta` is
        the noise std: one number, or one per example (all 0 or all > 0), per loss.rs."""
        sched = self.sched
        b = ksp.shape[0]
        etas = [float(e) for e in eta] if isinstance(eta, (list, tuple)) else [float(eta)] * b
        ab = sched.alpha_bar[t]
        sigma = sched.sigma(t)
        w = ab / (1.0 - ab)
        m = op.measured_reals()
        s = op.restrict(ksp)
        if all(e <= 0 for e in etas):
            st = (s + op.restrict(n) * sigma) * math.sqrt(ab)
            x0 = self.x0(op.adjoint(st), t)
            return sq_norm(s - op.forward(x0)) * w / m
        dev = ksp.device

        def per(values, dims):
            return torch.tensor(values, dtype=torch.float32, device=dev).reshape((-1,) + (1,) * dims)

        probe = op.restrict(probe)
        tau = self.cfg["sure_tau"]
        for e in etas:
            if e not in self.t_eta:
                self.t_eta[e] = sched.timestep_for_sigma(e)
        t_eta = [self.t_eta[e] for e in etas]
        root_ab_eta = per([math.sqrt(sched.alpha_bar[k]) for k in t_eta], 3)

        def denoise(y):
            return op.forward(self.x0(op.adjoint(y * root_ab_eta), t_eta))

        y1 = denoise(s)
        y2 = denoise(s + probe * tau)
        eta2 = [e * e for e in etas]
        m_each = op.measured_reals_each()
        floor = (per(eta2, 0) * m_each).sum()
        div = (probe.conj() * (y2 - y1)).real.sum(dim=(1, 2, 3))
        sure = (sq_norm(y1 - s) - floor + (div * per(eta2, 0)).sum() * (2.0 / tau)) / m
        # Per example: Tweedie's target where sigma_t > eta, else the pseudo-clean y1.
        tweedie = [sigma > e for e in etas]
        g = [(sigma * sigma - e * e) / (sigma * sigma) if tw else 1.0 for e, tw in zip(etas, tweedie)]
        keep = per([1.0 if tw else 0.0 for tw in tweedie], 3)
        target = s * keep + y1.detach() * (1.0 - keep)
        st = (target + op.restrict(n) * per([sigma * math.sqrt(gi) for gi in g], 3)) * math.sqrt(ab)
        u = op.adjoint(st)
        x0 = self.x0(u, t)
        u_meas = u / math.sqrt(ab)
        s_hat = u_meas + (x0 - u_meas) * per(g, 2)
        main = sq_norm(target - op.forward(s_hat)) * w / m
        return main + sure * self.cfg["sure_weight"]


# --------------------------------------------------------------------------------------------
# Checkpoints (export/src/train.rs save_checkpoint / read_checkpoint)
# --------------------------------------------------------------------------------------------


def write_atomic(path, write):
    """Calls `write(tmp)` on a temporary file beside `path`, then renames it to `path`, so that a
    reader never sees a partial file."""
    tmp = os.path.join(os.path.dirname(path) or ".", f".{os.path.basename(path)}.tmp{os.getpid()}")
    write(tmp)
    os.replace(tmp, path)


def read_checkpoint(path):
    from safetensors.torch import load_file

    if not os.path.exists(path):
        raise SystemExit(f"{path}: checkpoint not found")
    try:
        tensors = load_file(path)
    except Exception as e:  # noqa: BLE001 - the message names the file
        raise SystemExit(f"{path}: not a readable checkpoint (expected a safetensors file written by msm-train): {e}")
    if "__meta" not in tensors:
        raise SystemExit(f"{path}: checkpoint has no `__meta` entry; not written by msm-train")
    meta = json.loads(bytes(tensors.pop("__meta").numpy().tobytes()).decode())
    if meta.get("format") != CHECKPOINT_FORMAT:
        raise SystemExit(f"{path}: checkpoint format `{meta.get('format')}`, expected `{CHECKPOINT_FORMAT}`")
    return meta, tensors


def write_checkpoint(path, cfg, step, last_loss, names, params, ema, adam=None, extra=None):
    """Atomic write in msm-train's format; `adam` is (moments m, moments v), or None for zero
    moments."""
    from safetensors.torch import save_file

    meta = {"format": CHECKPOINT_FORMAT, "step": step, "last_loss": last_loss, "config": cfg}
    if extra:
        meta.update(extra)
    entries = {"__meta": torch.frombuffer(bytearray(json.dumps(meta).encode()), dtype=torch.uint8)}
    for i, n in enumerate(names):
        # Each entry its own contiguous copy: safetensors refuses shared or strided storage
        # (CUDA weights are channels-last).
        zero = torch.zeros(params[i].shape)
        m, v = (adam[0][i], adam[1][i]) if adam is not None else (zero, zero)
        for key, t in (("model", params[i].detach()), ("ema", ema[i]), ("adam_m", m), ("adam_v", v)):
            entries[f"{key}.{n}"] = t.float().cpu().clone(memory_format=torch.contiguous_format)
    write_atomic(path, lambda tmp: save_file(entries, tmp))


def write_weights(prefix, part, names, tensors, meta):
    """PREFIX-PART.safetensors: named f32 tensors with the run's metadata and `"half": PART`
    (JSON under the header key `msm`), one half (`ema` or `model`) of a checkpoint, small enough
    for a 16 MiB transfer; `--assemble` joins the two halves, `--init-from` takes the `ema` one."""
    from safetensors.torch import save_file

    tensors = {n: t.detach().float().cpu().clone(memory_format=torch.contiguous_format) for n, t in zip(names, tensors)}
    meta = dict(meta, half=part)
    write_atomic(f"{prefix}-{part}.safetensors", lambda tmp: save_file(tensors, tmp, metadata={"msm": json.dumps(meta)}))


def read_half(path):
    """(metadata, tensors) of a half written by `write_weights`, or None when `path` is not one
    (an msm-train checkpoint, say)."""
    from safetensors import safe_open

    try:
        with safe_open(path, framework="pt") as f:
            md = f.metadata() or {}
            if "msm" not in md:
                return None
            return json.loads(md["msm"]), {k: f.get_tensor(k) for k in f.keys()}
    except Exception:  # noqa: BLE001 - not a safetensors file: read_checkpoint names the problem
        return None


def read_init(path):
    """What `--init-from` starts from: an msm-train checkpoint, or the EMA half
    (PREFIX-ema.safetensors) that `--weights-out` or `--split` writes, as (metadata, tensors
    with `ema.` names)."""
    half = read_half(path) if os.path.exists(path) else None
    if half is None:
        return read_checkpoint(path)
    meta, tensors = half
    if meta.get("half") != "ema":
        raise SystemExit(f"{path}: the `{meta.get('half')}` half of a checkpoint; --init-from takes the EMA half (PREFIX-ema.safetensors) or a checkpoint")
    return meta, {f"ema.{n}": t for n, t in tensors.items()}


def split(path, prefix):
    """Writes the two halves of an msm-train checkpoint (PREFIX-ema/-model.safetensors, what
    `--weights-out` writes at the end of a run): the EMA half is all `--init-from` needs, a
    quarter of the checkpoint's size (no current weights, no Adam moments)."""
    meta, tensors = read_checkpoint(path)
    names = sorted(k[len("ema."):] for k in tensors if k.startswith("ema."))
    if not names:
        raise SystemExit(f"{path}: checkpoint holds no `ema.*` weights")
    wmeta = {k: meta.get(k) for k in ("config", "step", "last_loss", "trained_by")}
    for part in ("ema", "model"):
        write_weights(prefix, part, names, [tensors[f"{part}.{n}"] for n in names], wmeta)


def assemble(prefix, out):
    """Writes OUT/checkpoint.safetensors and OUT/config.json from PREFIX-ema.safetensors and
    PREFIX-model.safetensors (written by `--weights-out PREFIX`), with zero Adam moments."""
    halves = {}
    for part in ("ema", "model"):
        path = f"{prefix}-{part}.safetensors"
        if not os.path.exists(path):
            raise SystemExit(f"{path}: not found; expected the `{part}` half written by --weights-out")
        half = read_half(path)
        if half is None:
            raise SystemExit(f"{path}: no `msm` metadata; not written by --weights-out")
        if half[0].pop("half", part) != part:
            raise SystemExit(f"{path}: holds another half than `{part}`")
        halves[part] = half
    meta, ema = halves["ema"]
    meta_m, model = halves["model"]
    if meta != meta_m or sorted(ema) != sorted(model):
        raise SystemExit(f"{prefix}-ema and {prefix}-model come from different runs or steps")
    names = sorted(ema)
    os.makedirs(out, exist_ok=True)
    write_config(out, meta["config"])
    write_checkpoint(
        os.path.join(out, "checkpoint.safetensors"), meta["config"], meta["step"], meta["last_loss"],
        names, [model[n] for n in names], [ema[n] for n in names],
        extra={"trained_by": meta.get("trained_by"), "optimizer_state": "zero (not transferred)"},
    )


def write_config(out, cfg):
    def write(tmp):
        with open(tmp, "w") as f:
            f.write(json.dumps(cfg, indent=2))

    write_atomic(os.path.join(out, "config.json"), write)


# --------------------------------------------------------------------------------------------
# Training
# --------------------------------------------------------------------------------------------


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", help="run folder (checkpoint.safetensors, train.log, config.json)")
    ap.add_argument("--config", help="JSON with TrainConfig fields overriding the base config")
    ap.add_argument("--init-from", help="start from the EMA weights of this msm-train checkpoint, or of the EMA half PREFIX-ema.safetensors that --weights-out or --split writes (fresh optimizer, step 0)")
    ap.add_argument("--resume", action="store_true", help="continue OUT/checkpoint.safetensors")
    ap.add_argument("--volume", help="override data.volume (the NIfTI magnitude volume)")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--steps", type=int, help="override the total number of steps")
    ap.add_argument("--amp", choices=["auto", "on", "off"], default="auto", help="bf16 autocast for the network (auto: on for CUDA, and where the config's precision is bf16)")
    ap.add_argument("--channels-last", choices=["auto", "on", "off"], default="auto", help="channels-last weights and inputs (auto: on for CUDA)")
    ap.add_argument("--time-budget", type=float, help="seconds of training: sets steps from the measured step rate")
    ap.add_argument("--calibrate-steps", type=int, default=40, help="steps timed before --time-budget fixes the total")
    ap.add_argument("--decay-fraction", type=float, default=0.5, help="with --time-budget: the cosine decay covers this last fraction of the steps")
    ap.add_argument("--no-optimizer-state", action="store_true", help="write zero Adam moments (smaller transfer)")
    ap.add_argument("--weights-out", help="also write the EMA and current weights as PREFIX-ema/-model.safetensors at the end")
    ap.add_argument("--assemble", metavar="PREFIX", help="join PREFIX-ema/-model.safetensors into OUT/checkpoint.safetensors and exit")
    ap.add_argument("--split", metavar="CHECKPOINT", help="write the EMA and current weights of this checkpoint as --weights-out's two halves and exit")
    ap.add_argument("--hard-limit", type=float, help="stop (and checkpoint) after this many seconds whatever the step count")
    ap.add_argument("--print-config", action="store_true", help="print the default config (JSON) and exit")
    args = ap.parse_args(argv)

    if args.print_config:
        print(json.dumps(default_config(), indent=2))
        return 0
    if args.split:
        if not args.weights_out:
            ap.error("--split needs --weights-out PREFIX")
        split(args.split, args.weights_out)
        return 0
    if not args.out:
        ap.error("--out is required")
    if args.resume and args.init_from:
        ap.error("--resume and --init-from exclude each other")
    if args.assemble:
        assemble(args.assemble, args.out)
        return 0
    ckpt_path = os.path.join(args.out, "checkpoint.safetensors")

    base = default_config()
    init_meta, init_tensors = None, None
    if args.resume:
        init_meta, init_tensors = read_checkpoint(ckpt_path)
        base = merge(base, init_meta["config"], ckpt_path)
    elif args.init_from:
        init_meta, init_tensors = read_init(args.init_from)
        base = merge(base, init_meta["config"], args.init_from)
        base["init_from"] = args.init_from
    cfg = base
    if args.config:
        with open(args.config) as f:
            cfg = merge(cfg, json.load(f), args.config)
    if args.steps is not None:
        cfg["steps"] = args.steps
    if args.volume:
        cfg["data"]["volume"] = args.volume
    if args.init_from and init_meta["config"]["unet"] != cfg["unet"]:
        raise SystemExit(f"{args.init_from}: checkpoint holds a different architecture (`unet` section) than the config")

    if any(c["image_width"] not in (None, c["image_size"]) for c in (cfg["unet"], cfg["data"])):
        raise SystemExit(
            "config: image_width differs from image_size; this trainer trains square grids only; "
            "train non-square ones with msm-train"
        )
    if cfg["data"]["mask"] != "random":
        raise SystemExit(
            f"config: data.mask {cfg['data']['mask']!r}; this trainer draws and reads column masks "
            "only (\"random\"); train models of 2-D masks (\"random-2d\", \"variable-density-2d\") "
            "with msm-train"
        )
    eta = cfg["data"]["noise_eta"]
    scans = cfg["data"]["scans"]
    number = not isinstance(eta, bool) and isinstance(eta, (int, float)) and eta >= 0
    if not (number or (eta == "estimate" and scans)):
        raise SystemExit(
            f"config: data.noise_eta {eta!r}; expected a number >= 0, or \"estimate\" (each scan "
            "slice's own level) with data.scans"
        )
    dev = torch.device(args.device)
    if cfg["precision"] not in ("f32", "bf16"):
        raise SystemExit(f"config: precision `{cfg['precision']}`; expected f32 or bf16")
    if cfg["validation"]:
        print(
            "note: validation is msm-train's; this trainer skips it (run `msm-train validate --run "
            f"{args.out}` on the checkpoint)",
            flush=True,
        )
    # The data are opened before the run folder is made: a bad file leaves no folder behind.
    source = PreparedScans(cfg["data"], dev) if cfg["data"]["scans"] else Simulator(cfg["data"], dev)
    os.makedirs(args.out, exist_ok=True)
    amp = (dev.type == "cuda" or cfg["precision"] == "bf16") if args.amp == "auto" else args.amp == "on"
    cfg["precision"] = "bf16" if amp else "f32"
    if dev.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        torch.backends.cudnn.benchmark = True
    torch.manual_seed(cfg["seed"])
    net = UNet(cfg["unet"])
    names = sorted(n for n, _ in net.named_parameters())
    pmap = dict(net.named_parameters())
    params = [pmap[n] for n in names]
    with torch.no_grad():
        ema = [p.detach().clone() for p in params]
    adam_m = [torch.zeros_like(p) for p in params]
    adam_v = [torch.zeros_like(p) for p in params]
    step = 0
    if init_meta is not None:
        with torch.no_grad():
            for i, n in enumerate(names):
                key = f"model.{n}" if args.resume else f"ema.{n}"
                if key not in init_tensors:
                    raise SystemExit(f"checkpoint lacks `{key}`")
                t = init_tensors[key]
                if tuple(t.shape) != tuple(params[i].shape):
                    raise SystemExit(f"`{key}` has shape {tuple(t.shape)}, expected {tuple(params[i].shape)}")
                params[i].copy_(t)
                if args.resume:
                    ema[i] = init_tensors[f"ema.{n}"].clone()
                    adam_m[i] = init_tensors[f"adam_m.{n}"].clone()
                    adam_v[i] = init_tensors[f"adam_v.{n}"].clone()
                else:
                    ema[i] = t.clone()
        if args.resume:
            step = init_meta["step"]
    net.to(dev)
    channels_last = dev.type == "cuda" if args.channels_last == "auto" else args.channels_last == "on"
    if channels_last:
        net.to(memory_format=torch.channels_last)
    ema = [e.to(dev) for e in ema]
    adam_m = [m.to(dev) for m in adam_m]
    adam_v = [v.to(dev) for v in adam_v]

    sched = Schedule()
    loss_fn = Loss(net, sched, cfg, amp, channels_last)
    respaced = sched.respace(cfg["respaced_steps"])
    eta = cfg["data"]["noise_eta"]
    gen = torch.Generator(device=dev)
    gen.manual_seed(cfg["seed"] * 1_000_003 + step)
    pick = np.random.default_rng(cfg["seed"] * 7919 + step)

    trained_by = f"export/gpu/train.py, torch {torch.__version__} on {dev}"
    if dev.type == "cuda":
        trained_by += f" ({torch.cuda.get_device_name(dev)})"
    if amp:
        trained_by += ", bf16 autocast"
    log_path = os.path.join(args.out, "train.log")
    log = open(log_path, "a")

    def say(line):
        print(line, flush=True)
        log.write(line + "\n")
        log.flush()

    say(
        f"{trained_by}: "
        f"from step {step}, batch {cfg['batch_size']}, noise_eta {eta}, {source.describe()}"
    )
    b1, b2 = cfg["adam_betas"]
    start_step = step
    t_start = time.time()
    window = [time.time(), 0, torch.zeros((), device=dev)]
    last_loss = None

    saved_at = [None]

    def save():
        saved_at[0] = step
        write_config(args.out, cfg)
        adam = None if args.no_optimizer_state else (adam_m, adam_v)
        write_checkpoint(ckpt_path, cfg, step, last_loss, names, params, ema, adam, {"trained_by": trained_by})

    calib_from = start_step + 5
    t_calib = None
    while step < cfg["steps"]:
        if args.hard_limit and time.time() - t_start > args.hard_limit:
            say(f"hard limit of {args.hard_limit:.0f} s reached at step {step} (planned {cfg['steps']}): stopping")
            cfg["steps"] = step
            break
        if step == calib_from:
            if dev.type == "cuda":
                torch.cuda.synchronize()
            t_calib = time.time()
        if args.time_budget and step == calib_from + args.calibrate_steps:
            if dev.type == "cuda":
                torch.cuda.synchronize()
            rate = args.calibrate_steps / (time.time() - t_calib)
            remaining = args.time_budget - (time.time() - t_start)
            total = step + max(int(rate * remaining), 1)
            cfg["steps"] = total
            cfg["lr_decay_from"] = int(total - args.decay_fraction * (total - start_step))
            say(f"measured {rate:.2f} steps/s: {total} steps in all, cosine decay from step {cfg['lr_decay_from']}")
        ksp, mask, maps, eta_b = source.draw(cfg["batch_size"], gen)
        op = Operator(maps, mask)
        t = respaced[int(pick.integers(len(respaced)))]
        n = complex_randn(ksp.shape, dev, gen)
        noisy = any(e > 0 for e in eta_b) if isinstance(eta_b, list) else eta_b > 0
        probe = complex_randn(ksp.shape, dev, gen) if noisy else None
        loss = loss_fn(op, ksp, eta_b, t, n, probe)
        for p in params:
            p.grad = None
        loss.backward()
        k = step + 1
        lr = lr_at(cfg, k)
        with torch.no_grad():
            grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
            norm = torch.linalg.vector_norm(torch.stack(torch._foreach_norm(grads)))
            if cfg["grad_clip"] > 0:
                clip = torch.clamp(cfg["grad_clip"] / (norm + 1e-6), max=1.0).float()
            else:
                clip = torch.ones((), device=dev)
            grads = torch._foreach_mul(grads, clip)
            torch._foreach_mul_(adam_m, b1)
            torch._foreach_add_(adam_m, grads, alpha=1 - b1)
            torch._foreach_mul_(adam_v, b2)
            torch._foreach_addcmul_(adam_v, grads, grads, value=1 - b2)
            bc1 = 1 - b1**k
            bc2 = 1 - b2**k
            denom = torch._foreach_sqrt(adam_v)
            torch._foreach_div_(denom, math.sqrt(bc2))
            torch._foreach_add_(denom, cfg["adam_eps"])
            if cfg["weight_decay"]:
                torch._foreach_mul_(params, 1 - lr * cfg["weight_decay"])
            torch._foreach_addcdiv_(params, adam_m, denom, value=-lr / bc1)
            decay = min(cfg["ema_decay"], (1 + k) / (10 + k)) if cfg["ema_warmup"] else cfg["ema_decay"]
            torch._foreach_mul_(ema, decay)
            torch._foreach_add_(ema, params, alpha=1 - decay)
        step = k
        window[1] += 1
        window[2] += loss.detach()
        if step % max(cfg["log_every"], 1) == 0 or step == cfg["steps"]:
            mean = float(window[2]) / window[1]
            last_loss = float(loss.detach())
            if not math.isfinite(last_loss):
                raise SystemExit(f"loss is {last_loss} at step {step} (t = {t}); lower the learning rate")
            secs = max(time.time() - window[0], 1e-9)
            say(
                f"step {step}/{cfg['steps']} loss {last_loss:.6f} (mean of last {window[1]}: {mean:.6f}) t {t} "
                f"grad_norm {float(norm):.3f} lr {lr:.2e} {window[1] * cfg['batch_size'] / secs:.2f} examples/s"
            )
            window = [time.time(), 0, torch.zeros((), device=dev)]
        if step % max(cfg["checkpoint_every"], 1) == 0 or step == cfg["steps"]:
            last_loss = float(loss.detach())
            save()
    if step > start_step:
        last_loss = float(loss.detach())
    if args.weights_out:
        meta = {"config": cfg, "step": step, "last_loss": last_loss, "trained_by": trained_by}
        write_weights(args.weights_out, "ema", names, ema, meta)
        write_weights(args.weights_out, "model", names, params, meta)
    if saved_at[0] != step:
        save()
    say(f"done: step {step}, {time.time() - t_start:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
