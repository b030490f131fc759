"""The guided-diffusion UNet layout rules that msm-train (export/src/unet.rs) and the runtime
(src/unet/layout.rs) follow, shared by the GPU trainer (export/gpu/train.py) and the PyTorch
bench (benches/torch_msm.py): the default UNet config, where attention blocks go and how many
heads they have. Plain Python, no torch: train.py must run alone on a machine that has only
PyTorch, and the bench imports this file from export/gpu."""


def default_unet():
    """msm-train's `UNetConfig::default()` as JSON values (a fresh dict per call)."""
    return {
        "image_size": 128,
        "image_width": None,
        "in_channels": 2,
        "out_channels": 2,
        "model_channels": 32,
        "channel_mult": [1, 2, 2, 4],
        "num_res_blocks": 1,
        "attention_resolutions": [16],
        "num_heads": 1,
        "num_head_channels": 32,
        "num_heads_upsample": None,
        "use_scale_shift_norm": True,
        "resblock_updown": True,
        "conv_resample": True,
        "use_new_attention_order": False,
        "dropout": 0.0,
    }


def attention_at(u, ds):
    """Whether a block at downsampling factor `ds` has attention (guided-diffusion's
    `attention_resolutions` holds `image_size / resolution` factors)."""
    return any(r * ds == u["image_size"] for r in u["attention_resolutions"])


def heads(u, ch, upsample):
    """Attention heads of a block with `ch` channels; `upsample` for the output half, where
    `num_heads_upsample` applies when `num_head_channels` is unset."""
    if u["num_head_channels"] is not None:
        return ch // u["num_head_channels"]
    if upsample and u["num_heads_upsample"] is not None:
        return u["num_heads_upsample"]
    return u["num_heads"]
