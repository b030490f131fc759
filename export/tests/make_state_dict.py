#!/usr/bin/env python3
"""Writes a random state_dict in the layout of guided-diffusion's `UNetModel` as .safetensors.

usage: make_state_dict.py ARCH.json OUT.safetensors [--seed N] [--dtype f32|f16] [--prefix P]

ARCH.json holds the UNetModel settings under msm-export's field names (image_size, in_channels,
out_channels, model_channels, channel_mult, num_res_blocks, attention_resolutions,
use_scale_shift_norm, resblock_updown, conv_resample). The parameter names and shapes follow
guided-diffusion's `UNetModel.__init__` (guided_diffusion/unet.py), written out here independently
of msm-export's Rust layout code, so that a converter test checks one against the other. Only
torch is needed: safetensors is used when installed, else a minimal writer of the same format.
"""
import argparse
import json
import math
import struct

import torch


def unet_shapes(a):
    """Parameter name -> shape of guided-diffusion's UNetModel (unconditional, 2-D)."""
    mc = a["model_channels"]
    ted = 4 * mc
    scale_shift = a.get("use_scale_shift_norm", True)
    attention_ds = [a["image_size"] // r for r in a["attention_resolutions"]]
    mult = a["channel_mult"]
    nrb = a["num_res_blocks"]
    shapes = {}

    def linear(p, din, dout):
        shapes[p + ".weight"] = (dout, din)
        shapes[p + ".bias"] = (dout,)

    def conv(p, cin, cout, k=3, dims=2):
        shapes[p + ".weight"] = (cout, cin) + (k,) * dims
        shapes[p + ".bias"] = (cout,)

    def norm(p, ch):
        shapes[p + ".weight"] = (ch,)
        shapes[p + ".bias"] = (ch,)

    def resblock(p, ch, out):
        norm(p + ".in_layers.0", ch)
        conv(p + ".in_layers.2", ch, out)
        linear(p + ".emb_layers.1", ted, 2 * out if scale_shift else out)
        norm(p + ".out_layers.0", out)
        conv(p + ".out_layers.3", out, out)
        if out != ch:
            conv(p + ".skip_connection", ch, out, k=1)

    def attention(p, ch):
        norm(p + ".norm", ch)
        conv(p + ".qkv", ch, 3 * ch, k=1, dims=1)
        conv(p + ".proj_out", ch, ch, k=1, dims=1)

    linear("time_embed.0", mc, ted)
    linear("time_embed.2", ted, ted)
    ch = input_ch = mult[0] * mc
    conv("input_blocks.0.0", a["in_channels"], ch)
    chans = [ch]
    ds, idx = 1, 1
    for level, m in enumerate(mult):
        for _ in range(nrb):
            resblock(f"input_blocks.{idx}.0", ch, m * mc)
            ch = m * mc
            if ds in attention_ds:
                attention(f"input_blocks.{idx}.1", ch)
            chans.append(ch)
            idx += 1
        if level != len(mult) - 1:
            if a.get("resblock_updown", False):
                resblock(f"input_blocks.{idx}.0", ch, ch)
            elif a.get("conv_resample", True):
                conv(f"input_blocks.{idx}.0.op", ch, ch)
            chans.append(ch)
            ds *= 2
            idx += 1
    resblock("middle_block.0", ch, ch)
    attention("middle_block.1", ch)
    resblock("middle_block.2", ch, ch)
    idx = 0
    for level, m in list(enumerate(mult))[::-1]:
        for i in range(nrb + 1):
            resblock(f"output_blocks.{idx}.0", ch + chans.pop(), m * mc)
            ch = m * mc
            j = 1
            if ds in attention_ds:
                attention(f"output_blocks.{idx}.{j}", ch)
                j += 1
            if level and i == nrb:
                if a.get("resblock_updown", False):
                    resblock(f"output_blocks.{idx}.{j}", ch, ch)
                elif a.get("conv_resample", True):
                    conv(f"output_blocks.{idx}.{j}.conv", ch, ch)
                ds //= 2
            idx += 1
    norm("out.0", ch)
    conv("out.2", input_ch, a["out_channels"])
    return shapes


def random_state_dict(shapes, seed, dtype):
    g = torch.Generator().manual_seed(seed)
    sd = {}
    for name, shape in shapes.items():
        r = torch.randn(shape, generator=g)
        if len(shape) == 1 and name.endswith("weight"):  # GroupNorm scales
            t = 1.0 + 0.2 * r
        else:
            fan_in = math.prod(shape[1:]) if len(shape) > 1 else 1
            t = r / math.sqrt(fan_in)
        sd[name] = t.to(dtype).contiguous()
    return sd


def save(sd, path):
    try:
        from safetensors.torch import save_file
    except ImportError:
        save_file = None
    if save_file is not None:
        save_file(sd, path)
        return
    codes = {torch.float32: "F32", torch.float16: "F16", torch.float64: "F64"}
    header, blobs, offset = {}, [], 0
    for name, t in sd.items():
        blob = bytes(t.reshape(-1).view(torch.uint8).tolist())
        header[name] = {
            "dtype": codes[t.dtype],
            "shape": list(t.shape),
            "data_offsets": [offset, offset + len(blob)],
        }
        blobs.append(blob)
        offset += len(blob)
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for blob in blobs:
            f.write(blob)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("arch")
    p.add_argument("out")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--dtype", choices=["f32", "f16"], default="f32")
    p.add_argument("--prefix", default="", help="key prefix, e.g. `module.` (DataParallel)")
    a = p.parse_args()
    with open(a.arch) as f:
        arch = json.load(f)
    dtype = {"f32": torch.float32, "f16": torch.float16}[a.dtype]
    sd = random_state_dict(unet_shapes(arch), a.seed, dtype)
    save({a.prefix + k: v for k, v in sd.items()}, a.out)
    print(f"wrote {len(sd)} tensors ({a.dtype}) to {a.out}")


if __name__ == "__main__":
    main()
