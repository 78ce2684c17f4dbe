"""Generative networks and GAN losses, each a registry entry (timm's shape, as the classifiers).

GANs work on images scaled to [-1, 1] (the generator ends in tanh); autoencoders on [0, 1]
(the decoder ends in a sigmoid). Sizes come from the data set's `DatasetInfo`; the
convolutional nets need sides divisible by 4 (28 and 32 both are). ``--conditional`` gives the
generator (and discriminator) the class: a learned embedding added to the noise, and a
projection term in the discriminator (Miyato & Koyama 2018).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import parametrize

from smallvision.data.info import DatasetInfo
from smallvision.errors import UsageError
from smallvision.registry import Contract, Registry


@dataclass(frozen=True)
class GenerativeContract(Contract):
    kind: str  # gan, autoencoder or diffusion: the command that trains it
    loss: str = "bce"  # a GAN's own loss (GAN_LOSSES), what --loss defaults to
    defaults: dict[str, Any] = field(default_factory=dict)  # settings it was tuned with (lr, beta1, ...)


GENERATIVE: Registry[Callable[..., dict[str, nn.Module]]] = Registry("generative model", contract=GenerativeContract)


class Generator(nn.Module):
    """z (B, Z) [+ class] -> image (B, C, H, W) in [-1, 1]."""

    def __init__(self, body: nn.Module, z_dim: int, num_classes: int, conditional: bool) -> None:
        super().__init__()
        self.body, self.z_dim = body, z_dim
        self.embed = nn.Embedding(num_classes, z_dim) if conditional else None

    def forward(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        if self.embed is not None:
            if y is None:
                raise UsageError("this generator is conditional: give the class to draw")
            z = z + self.embed(y)
        return self.body(z)


class Discriminator(nn.Module):
    """image [+ class] -> one score per image (B,): a logit, or a critic value. Each image is scored
    on its own (no batch statistics), so the real and generated batches can go through stacked."""

    def __init__(self, features: nn.Module, width: int, num_classes: int, conditional: bool) -> None:
        super().__init__()
        self.features, self.out = features, nn.Linear(width, 1)
        self.embed = nn.Embedding(num_classes, width) if conditional else None

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        h = self.features(x)  # (B, width)
        score = self.out(h).squeeze(1)
        if self.embed is not None and y is not None:
            score = score + (embed_rows(self.embed, y) * h).sum(1)  # projection discriminator
        return score


def embed_rows(embed: nn.Embedding, y: torch.Tensor) -> torch.Tensor:
    """``embed(y)``. For a spectrally normalised table the rows are gathered first and divided by σ
    after: the same values and gradients, without dividing (and differentiating) every row. With
    ``--clusters 300`` the projection table is 300 × 6 272, and dividing all of it was about a
    quarter of a DCGAN step (997 against 1 182 images/s in a step-only loop, bf16 on 2 cores). σ is
    torch's spectral_norm's own: the same power iteration on the same u, v buffers, so checkpoints
    are unchanged."""
    if not parametrize.is_parametrized(embed, "weight"):
        return embed(y)
    sn, weight = embed.parametrizations.weight[0], embed.parametrizations.weight.original
    if sn.training:
        sn._power_method(weight, sn.n_power_iterations)
    u, v = sn._u.clone(memory_format=torch.contiguous_format), sn._v.clone(memory_format=torch.contiguous_format)
    return F.embedding(y, weight) / torch.vdot(u, torch.mv(weight, v))


def _check_side(info: DatasetInfo, name: str) -> None:
    if info.height % 4 or info.width % 4:
        raise UsageError(f"{name} needs image sides divisible by 4, got {info.height}×{info.width}")


@GENERATIVE.register("gan-mlp", "the tutorial's fully connected GAN: G z-1024-1024-D tanh, D D-256-256-1 LeakyReLU "
                     "(seed 002 keeps only the chapter's headings; sizes of the common PyTorch tutorial GAN)", kind="gan",
                     loss="bce")
def gan_mlp(info: DatasetInfo, z_dim: int = 96, g_hidden: int = 1024, d_hidden: int = 256,
            conditional: bool = False) -> dict[str, nn.Module]:
    c, h, w = info.input_shape
    g = nn.Sequential(nn.Linear(z_dim, g_hidden), nn.ReLU(True), nn.Linear(g_hidden, g_hidden), nn.ReLU(True),
                      nn.Linear(g_hidden, c * h * w), nn.Tanh(), nn.Unflatten(1, (c, h, w)))
    d = nn.Sequential(nn.Flatten(), nn.Linear(c * h * w, d_hidden), nn.LeakyReLU(0.2, True),
                      nn.Linear(d_hidden, d_hidden), nn.LeakyReLU(0.2, True))
    k = info.num_classes
    return {"G": Generator(g, z_dim, k, conditional), "D": Discriminator(d, d_hidden, k, conditional)}


@GENERATIVE.register("dcgan", "DCGAN (Radford et al.) for 28-32 px: G z-(4w·H/4·W/4)-ConvT-ConvT tanh with BatchNorm "
                     "and a 3×3 block at each stage, D two stride-2 convolutions with LeakyReLU and spectral norm; "
                     "hinge loss", kind="gan", loss="hinge")
def dcgan(info: DatasetInfo, z_dim: int = 64, width: int = 32, conditional: bool = False, extra: int = 1,
          sn: bool = True, d_width: int = 0, d_extra: int = 0) -> dict[str, nn.Module]:
    """`extra`: that many 3×3 convolution-BatchNorm-ReLU blocks after each of the generator's two
    low-resolution stages (H/4, H/2): a deeper generator. `sn`: spectral normalisation of every
    discriminator layer (Miyato et al. 2018). `d_width`: the discriminator's own width (0:
    `width`); its second convolution is the costliest layer of a step, so a narrower
    discriminator buys the generator more steps. `d_extra`: that many 3×3 convolution-LeakyReLU
    blocks after the discriminator's second convolution (at H/4): a deeper critic, as SNGAN's
    (Miyato et al. 2018) is deeper than Radford et al.'s. Version 2 (extra=1, sn=True, the hinge
    loss) against version 1 (extra=0, sn=False, bce): docs/generative.md."""
    _check_side(info, "dcgan")
    c, h, w = info.input_shape
    k = info.num_classes
    if extra < 0 or d_extra < 0:
        raise UsageError(f"--model-arg extra and d_extra count blocks: 0 or more, not {min(extra, d_extra)}")

    def blocks(ch: int) -> list[nn.Module]:
        return [m for _ in range(extra) for m in (nn.Conv2d(ch, ch, 3, 1, 1, bias=False), nn.BatchNorm2d(ch),
                                                 nn.ReLU(True))]

    g = nn.Sequential(
        nn.Linear(z_dim, 4 * width * (h // 4) * (w // 4)), nn.Unflatten(1, (4 * width, h // 4, w // 4)),
        nn.BatchNorm2d(4 * width), nn.ReLU(True), *blocks(4 * width),
        nn.ConvTranspose2d(4 * width, 2 * width, 4, 2, 1, bias=False), nn.BatchNorm2d(2 * width), nn.ReLU(True),  # H/2
        *blocks(2 * width),
        nn.ConvTranspose2d(2 * width, c, 4, 2, 1), nn.Tanh())  # (B, C, H, W)
    dw = d_width or width
    d = nn.Sequential(
        nn.Conv2d(c, 2 * dw, 4, 2, 1), nn.LeakyReLU(0.2, True),  # (B, 2w, H/2, W/2)
        nn.Conv2d(2 * dw, 4 * dw, 4, 2, 1), nn.LeakyReLU(0.2, True),  # (B, 4w, H/4, W/4)
        *[m for _ in range(d_extra) for m in (nn.Conv2d(4 * dw, 4 * dw, 3, 1, 1), nn.LeakyReLU(0.2, True))],
        nn.Flatten())
    D = Discriminator(d, 4 * dw * (h // 4) * (w // 4), k, conditional)
    if sn:
        _spectral_norm(D)
    return {"G": Generator(g, z_dim, k, conditional), "D": D}


@GENERATIVE.register("dcgan-deep-d", "dcgan with a narrower, deeper discriminator (d_width=24, d_extra=1): the "
                     "no-label recipe's network (gan-nolabel; a deeper critic at ~5 % of the step, a narrower one "
                     "buys the generator more steps)", kind="gan", loss="hinge")
def dcgan_deep_d(info: DatasetInfo, z_dim: int = 64, width: int = 32, conditional: bool = False, extra: int = 1,
                 sn: bool = True, d_width: int = 24, d_extra: int = 1) -> dict[str, nn.Module]:
    return dcgan(info, z_dim, width, conditional, extra, sn, d_width, d_extra)


# dcgan options that smallvision 0.1 had and 0.2 took out (docs/generative.md, "Tried, not kept"),
# with the value that meant "off": a checkpoint saved with them off rebuilds the same network.
REMOVED_ARGS = {"d_bn": False, "mbstd": False, "cbn": False, "aux_classes": False}


def current_args(model: str, args: dict[str, Any], source: str) -> dict[str, Any]:
    """A checkpoint's model options without those 0.2 removed (when off; on: a one-line error)."""
    for key, off in REMOVED_ARGS.items():
        if args.get(key, off) != off:
            raise UsageError(f"{source}: a {model} with {key}={args[key]} (smallvision 0.1); 0.2 removed it "
                             "(docs/generative.md, 'Tried, not kept'): git checkout da0698c to load it")
    return {k: v for k, v in args.items() if k not in REMOVED_ARGS}


def _spectral_norm(net: nn.Module) -> None:
    """Every convolution, linear layer and embedding of `net` divided by its largest singular value."""
    from torch.nn.utils.parametrizations import spectral_norm

    for m in list(net.modules()):
        if isinstance(m, (nn.Conv2d, nn.Linear, nn.Embedding)):
            spectral_norm(m)


class AutoEncoder(nn.Module):
    """x (B, C, H, W) in [0, 1] -> (reconstruction, latent mean, latent log-variance or None)."""

    def __init__(self, encoder: nn.Module, decoder: nn.Module, latent: int, width: int, variational: bool) -> None:
        super().__init__()
        self.encoder, self.decoder, self.latent, self.variational = encoder, decoder, latent, variational
        self.mu = nn.Linear(width, latent)
        self.logvar = nn.Linear(width, latent) if variational else None

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        h = self.encoder(x)
        return self.mu(h), (self.logvar(h) if self.logvar is not None else None)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.decoder(z))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        mu, logvar = self.encode(x)
        z = mu
        if logvar is not None and self.training:  # the reparameterisation trick
            z = mu + torch.randn_like(mu) * (0.5 * logvar).exp()
        return self.decode(z), mu, logvar


def mlp_autoencoder(info: DatasetInfo, variational: bool, latent: int = 2, hidden: int = 256) -> AutoEncoder:
    c, h, w = info.input_shape
    enc = nn.Sequential(nn.Flatten(), nn.Linear(c * h * w, 2 * hidden), nn.ReLU(True), nn.Linear(2 * hidden, hidden),
                        nn.ReLU(True))
    dec = nn.Sequential(nn.Linear(latent, hidden), nn.ReLU(True), nn.Linear(hidden, 2 * hidden), nn.ReLU(True),
                        nn.Linear(2 * hidden, c * h * w), nn.Unflatten(1, (c, h, w)))
    return AutoEncoder(enc, dec, latent, hidden, variational)


def conv_autoencoder(info: DatasetInfo, variational: bool, latent: int = 16, width: int = 32) -> AutoEncoder:
    _check_side(info, "conv autoencoder")
    c, h, w = info.input_shape
    flat = 2 * width * (h // 4) * (w // 4)
    enc = nn.Sequential(nn.Conv2d(c, width, 3, 2, 1), nn.ReLU(True), nn.Conv2d(width, 2 * width, 3, 2, 1), nn.ReLU(True),
                        nn.Flatten(), nn.Linear(flat, 128), nn.ReLU(True))  # (B, 128)
    dec = nn.Sequential(nn.Linear(latent, flat), nn.ReLU(True), nn.Unflatten(1, (2 * width, h // 4, w // 4)),
                        nn.ConvTranspose2d(2 * width, width, 4, 2, 1), nn.ReLU(True),
                        nn.ConvTranspose2d(width, c, 4, 2, 1))
    return AutoEncoder(enc, dec, latent, 128, variational)


def _autoencoder_entry(build: Callable[..., AutoEncoder], variational: bool) -> Callable[..., dict[str, nn.Module]]:
    def entry(info: DatasetInfo, **kwargs: Any) -> dict[str, nn.Module]:
        return {"AE": build(info, variational, **kwargs)}

    entry.__wrapped__ = build  # type: ignore[attr-defined]  # its defaults, for the checkpoint (loop.resolved_args)
    return entry


for _name, _build, _variational, _desc in [
    ("ae-mlp", mlp_autoencoder, False, "fully connected autoencoder D-512-256-latent-256-512-D (latent=2, hidden=256)"),
    ("vae-mlp", mlp_autoencoder, True, "fully connected variational autoencoder (Kingma & Welling; latent=2, hidden=256)"),
    ("ae-conv", conv_autoencoder, False, "convolutional autoencoder: two stride-2 convolutions, two transposed (latent=16, "
                                         "width=32)"),
    ("vae-conv", conv_autoencoder, True, "convolutional variational autoencoder (latent=16, width=32)"),
]:
    GENERATIVE.register(_name, _desc, kind="autoencoder")(_autoencoder_entry(_build, _variational))


# ----------------------------------------------------------------------------- diffusion (flow matching)
def time_embedding(t: torch.Tensor, dim: int) -> torch.Tensor:
    """Sinusoidal features of times t ∈ [0, 1] (B,) -> (B, dim), as the DDPM / Transformer position code."""
    import math

    half = dim // 2
    freqs = torch.exp(-math.log(10000.0) * torch.arange(half, device=t.device, dtype=torch.float32) / half)
    a = t.float()[:, None] * 1000.0 * freqs[None]
    return torch.cat([a.sin(), a.cos()], 1)


class _ResBlock(nn.Module):
    """GroupNorm-SiLU-conv twice, the time (and class) code added in between; a 1×1 skip when widths differ."""

    def __init__(self, cin: int, cout: int, tdim: int) -> None:
        super().__init__()
        self.n1, self.c1 = nn.GroupNorm(min(8, cin), cin), nn.Conv2d(cin, cout, 3, padding=1)
        self.t = nn.Linear(tdim, cout)
        self.n2, self.c2 = nn.GroupNorm(min(8, cout), cout), nn.Conv2d(cout, cout, 3, padding=1)
        self.skip = nn.Conv2d(cin, cout, 1) if cin != cout else nn.Identity()

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        h = self.c1(F.silu(self.n1(x))) + self.t(emb)[:, :, None, None]
        return self.c2(F.silu(self.n2(h))) + self.skip(x)


class UNet(nn.Module):
    """The velocity v(x_t, t[, class]) of a flow from noise (t = 0) to images (t = 1), (B, C, H, W) in
    [-1, 1]. A small U-Net (Ronneberger et al.; the DDPM shape without attention): `patch`×`patch`
    pixels folded into channels first (PixelUnshuffle, so no layer runs at full resolution on a CPU),
    one residual block per level of widths `width`×`mults`, stride-2 convolutions down, nearest
    upsampling and skip concatenation up. With `conditional`, a class code (index K: "no class",
    for classifier-free guidance) is added to the time code."""

    def __init__(self, info: DatasetInfo, width: int, mults: list[int], patch: int, conditional: bool) -> None:
        super().__init__()
        c, h, w = info.input_shape
        if h % patch or w % patch:
            raise UsageError(f"unet: patch {patch} does not divide the {h}×{w} images")
        self.image_shape, self.patch, self.width, self.num_classes = (c, h, w), patch, width, info.num_classes
        tdim, cin = 4 * width, c * patch * patch
        self.time = nn.Sequential(nn.Linear(width, tdim), nn.SiLU(), nn.Linear(tdim, tdim))
        self.embed = nn.Embedding(info.num_classes + 1, tdim) if conditional else None
        self.stem = nn.Conv2d(cin, width, 3, padding=1)
        chans = [width * m for m in mults]
        self.down, self.pool, self.up = nn.ModuleList(), nn.ModuleList(), nn.ModuleList()
        cur = width
        for i, ch in enumerate(chans):
            self.down.append(_ResBlock(cur, ch, tdim))
            self.pool.append(nn.Conv2d(ch, ch, 3, stride=2, padding=1) if i < len(chans) - 1 else nn.Identity())
            cur = ch
        self.mid = _ResBlock(cur, cur, tdim)
        for ch in reversed(chans):
            self.up.append(_ResBlock(cur + ch, ch, tdim))
            cur = ch
        self.out = nn.Sequential(nn.GroupNorm(min(8, cur), cur), nn.SiLU(), nn.Conv2d(cur, cin, 3, padding=1))
        nn.init.zeros_(self.out[-1].weight)  # starts at v = 0: the untrained flow leaves the noise as it is
        nn.init.zeros_(self.out[-1].bias)

    def forward(self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        emb = self.time(time_embedding(t, self.width))
        if self.embed is not None:  # no class given: the "no class" code (the unconditional half of guidance)
            y = torch.full((len(x),), self.num_classes, device=x.device, dtype=torch.long) if y is None else y
            emb = emb + self.embed(y)
        h = self.stem(F.pixel_unshuffle(x, self.patch) if self.patch > 1 else x)
        skips = []
        for block, pool in zip(self.down, self.pool, strict=True):
            h = block(h, emb)
            skips.append(h)
            h = pool(h)
        h = self.mid(h, emb)
        for block in self.up:
            skip = skips.pop()
            if h.shape[-2:] != skip.shape[-2:]:
                h = F.interpolate(h, size=skip.shape[-2:], mode="nearest")
            h = block(torch.cat([h, skip], 1), emb)
        h = self.out(h)
        return F.pixel_shuffle(h, self.patch) if self.patch > 1 else h


@GENERATIVE.register("unet", "a small U-Net velocity model for flow matching (rectified flow): 2×2 patches, one "
                     "residual block per level, widths width×mults; Adam 1e-3", kind="diffusion",
                     defaults={"lr": 1e-3, "beta1": 0.9})
def unet(info: DatasetInfo, width: int = 32, mults: list[int] | tuple[int, ...] = (1, 2, 2), patch: int = 2,
         conditional: bool = False) -> dict[str, nn.Module]:
    return {"G": UNet(info, width, list(mults), patch, conditional)}


def _a(kind: str) -> str:
    """'a GAN', 'an autoencoder'."""
    return {"gan": "a GAN", "diffusion": "a diffusion model"}.get(kind) or ("an " if kind[0] in "aeiou" else "a ") + kind


def check_kind(name: str, kind: str) -> None:
    """`name` is a registered model of this family (gan, diffusion, autoencoder): else one line
    naming what it is and the family's models."""
    entry = GENERATIVE.entry(name)
    if entry.contract.kind != kind:
        family = {"gan": "GAN", "diffusion": "diffusion model"}.get(kind, kind)
        raise UsageError(f"{name!r} is {_a(entry.contract.kind)}, not {_a(kind)}; "
                         f"{family}s: {', '.join(e.name for e in GENERATIVE if e.contract.kind == kind)}")


def create_generative(name: str, info: DatasetInfo, kind: str, **kwargs: Any) -> dict[str, nn.Module]:
    check_kind(name, kind)
    entry = GENERATIVE.entry(name)
    try:
        return entry.fn(info, **kwargs)
    except TypeError as e:
        if "unexpected keyword" in str(e):
            raise UsageError(f"model {name!r}: {str(e).split(') ', 1)[-1]}") from None
        raise
