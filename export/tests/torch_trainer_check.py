#!/usr/bin/env python3
"""The PyTorch trainer's pieces (export/gpu/train.py) on inputs written by tests/torch_trainer.rs,
so that the Rust test compares them with msm-train's own.

usage:
  torch_trainer_check.py forward CKPT IN OUT     eps of the checkpoint's `model.*` weights on
                                                 IN's `x` [N, C, H, W] and `t` [N] -> OUT `eps`
  torch_trainer_check.py loss CKPT IN OUT        the loss on IN's `kspace`, `maps` (complex as
                                                 [..., 2]), `mask`, `n`, `probe`, `t`, `eta`
                                                 -> OUT `loss` [1]
  torch_trainer_check.py prepared CONFIG OUT    one minibatch of the prepared scans CONFIG
                                                 lists, as train.py draws it (generator seed 7):
                                                 `kspace`, `maps`, `mask`, `eta`, `index`
  torch_trainer_check.py data VOLUME SIZE COILS ACS OUT
                                                 the simulator's coil maps, its slices axial
                                                 60, coronal 100, sagittal 90 (the coronal and
                                                 sagittal ones with the held-out block 80..100
                                                 cut out), its axial slice indices and slice
                                                 counts per plane, and the 99th percentile of
                                                 the zero-filled magnitude of 256 draws
All files are safetensors; computations in f32 on the CPU.
"""

import json
import os
import sys

import torch
from safetensors.torch import load_file, save_file

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "gpu"))
import train as T  # noqa: E402


def load_net(ckpt):
    meta, tensors = T.read_checkpoint(ckpt)
    net = T.UNet(meta["config"]["unet"])
    net.load_state_dict({k[len("model."):]: v for k, v in tensors.items() if k.startswith("model.")})
    net.eval()
    return meta["config"], net


def forward(ckpt, inp, out):
    _, net = load_net(ckpt)
    d = load_file(inp)
    with torch.no_grad():
        eps = net.eps(d["x"], d["t"])
    save_file({"eps": eps.contiguous()}, out)


def loss(ckpt, inp, out):
    cfg, net = load_net(ckpt)
    d = load_file(inp)
    c = lambda k: torch.view_as_complex(d[k].contiguous())  # noqa: E731
    op = T.Operator(c("maps"), d["mask"])
    fn = T.Loss(net, T.Schedule(), cfg, amp=False)
    t = int(d["t"].item())
    eta = [float(e) for e in d["eta"].reshape(-1)]  # one per example, or one for all
    eta = eta[0] if len(eta) == 1 else eta
    with torch.no_grad():
        value = fn(op, c("kspace"), eta, t, c("n"), c("probe"))
    save_file({"loss": value.reshape(1).float()}, out)


def data(volume, size, coils, acs, out):
    size, coils, acs = int(size), int(coils), int(acs)
    cfg = T.default_config()["data"]
    cfg.update({"volume": volume, "image_size": size, "coils": coils, "acs_lines": acs})
    sim = T.Simulator(cfg, torch.device("cpu"))
    res = {"maps": torch.view_as_real(sim.maps[0]).contiguous()}
    # The slices the simulator draws from (axial from the whole volume, coronal and sagittal
    # from the volume with the held-out block cut out).
    for plane, index in (("axial", 60), ("coronal", 100), ("sagittal", 90)):
        p = sim.PLANES.index(plane)
        res[f"{plane}{index}"] = sim.stacks[p][sim.ids[p].index(index)].contiguous()
    res["axial_ids"] = torch.tensor(sim.ids[0])
    res["counts"] = torch.tensor([len(i) for i in sim.ids])
    gen = torch.Generator().manual_seed(5)
    ksp, mask = sim.batch(256, gen)
    zf = T.Operator(sim.maps, mask).adjoint(ksp).abs().reshape(256, -1)
    rank = -(-99 * zf.shape[1] // 100) - 1  # nearest rank: ceil(0.99 n) - 1
    res["p99"] = zf.sort(dim=1).values[:, rank].contiguous()
    res["kept"] = mask.float().mean(dim=1).contiguous()
    save_file(res, out)


def prepared(config, out):
    """Draws one minibatch of 16 from the prepared scans of `config` (a training config's JSON)
    with a generator seeded 7 and writes what the trainer would train on: `kspace` and `maps`
    (complex as [..., 2]), `mask`, `eta`, and the slice indices drawn (`index`, over the files
    in order)."""
    with open(config) as f:
        cfg = T.merge(T.default_config(), json.load(f))
    scans = T.PreparedScans(cfg["data"], torch.device("cpu"))
    gen = torch.Generator().manual_seed(7)
    ksp, mask, maps, eta = scans.draw(16, gen)
    gen = torch.Generator().manual_seed(7)
    index = torch.randint(0, len(scans.noise), (16,), generator=gen)
    save_file({
        "kspace": torch.view_as_real(ksp).contiguous(),
        "maps": torch.view_as_real(maps).contiguous(),
        "mask": mask.to(torch.uint8).contiguous(),
        "eta": torch.tensor(eta, dtype=torch.float64),
        "index": index,
    }, out)


if __name__ == "__main__":
    cmds = {"forward": forward, "loss": loss, "data": data, "prepared": prepared}
    if len(sys.argv) < 2 or sys.argv[1] not in cmds:
        sys.exit(__doc__)
    cmds[sys.argv[1]](*sys.argv[2:])
