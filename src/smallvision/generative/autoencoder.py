"""`smallvision autoencoder train|sample|reconstruct`: the autoencoder loop, sampling, reconstruction.

Loss per image: binary cross-entropy of the reconstruction summed over pixels (images in [0, 1]),
plus ``kl_weight`` × the KL divergence to N(0, I) for a VAE. ``--denoise σ`` feeds images with
Gaussian noise of std σ and asks for the clean ones. Reported: the test set's mean squared error
per pixel (the reconstruction error), each epoch. Pictures: per epoch the same 8 test images
(input row, [noisy row,] output row); at the end the test set's latent codes in 2-D (the code itself
for a 2-D bottleneck, else its first two principal components), coloured by class.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from smallvision.engine.progress import Progress
from smallvision.errors import UsageError
from smallvision.generative.config import AutoencoderConfig
from smallvision.generative.loop import (
    GenSession,
    load_net,
    open_session,
    run_session,
    write_gen_report,
)
from smallvision.report import plots
from smallvision.report.plots import plot_losses, save_grid
from smallvision.runfolder import RunFolder


def _loss(ae: torch.nn.Module, x: torch.Tensor, inp: torch.Tensor, kl_weight: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(mean loss per image, reconstructions)."""
    recon, mu, logvar = ae(inp)
    loss = F.binary_cross_entropy(recon, x, reduction="sum") / len(x)
    if logvar is not None:
        loss = loss + kl_weight * (-0.5 * (1 + logvar - mu.pow(2) - logvar.exp()).sum() / len(x))
    return loss, recon


def _noisy(x: torch.Tensor, sigma: float) -> torch.Tensor:
    return (x + sigma * torch.randn_like(x)).clamp_(0, 1) if sigma else x


@torch.no_grad()
def test_error(s: GenSession) -> tuple[float, float]:
    """(mean squared error per pixel, mean loss per image) on the test split; fixed noise when denoising."""
    ae = s.nets["AE"].eval()
    g = torch.Generator(device=s.device).manual_seed(s.cfg.seed + 7)
    se, loss, n = 0.0, 0.0, 0
    for i in range(0, len(s.test[0]), 1000):
        x = s.test[0][i : i + 1000]
        inp = (x + s.cfg.denoise * torch.randn(x.shape, generator=g, device=s.device)).clamp(0, 1) if s.cfg.denoise else x
        lo, recon = _loss(ae, x, inp, s.cfg.kl_weight)
        se += float(((recon - x) ** 2).sum())
        loss += float(lo) * len(x)
        n += len(x)
    ae.train()
    return se / (n * s.test[0][0].numel()), loss / n


def train_autoencoder(cfg: AutoencoderConfig, runs_dir: str | Path = "runs", command: str = "", resume: str | Path | None = None,
                      progress: Progress | None = None, callbacks: Sequence[Any] = ()) -> dict[str, Any]:
    s = open_session(cfg, runs_dir, command, resume, progress)
    x8 = s.test[0][:8]
    s.fixed = {"x": x8, "inp": _noisy(x8, cfg.denoise) if cfg.denoise else x8}
    return run_session(s, ae_step, _epoch_end, _line, _finish, callbacks)


def ae_step(s: GenSession, xb: torch.Tensor, yb: torch.Tensor) -> None:
    """One optimiser step on the reconstruction (+ KL) loss; the loss sum into s.meter."""
    loss, _ = _loss(s.nets["AE"], xb, _noisy(xb, s.cfg.denoise), s.cfg.kl_weight)
    s.optimise("optim_ae", loss)
    s.add("loss", loss.detach() * len(xb))


def _line(row: dict[str, Any]) -> str:
    return (f"epoch {row['epoch']:>3}  train loss {row['train_loss']:.2f}  test loss {row['test_loss']:.2f}  "
            f"test MSE/pixel {row['test_mse']:.5f}  [{row['seconds']:.1f}s]")


def _epoch_end(s: GenSession, epoch: int) -> dict[str, Any]:
    st = s.state
    sums, seen = s.take_sums()
    loss_sum = sums.get("loss", 0.0)
    st.images_seen += seen
    mse, test_loss = test_error(s)
    row = {"epoch": epoch, "step": st.step, "train_loss": loss_sum / max(seen, 1), "test_loss": test_loss,
           "test_mse": mse, "seconds": round(st.elapsed, 2)}
    st.history.append(row)
    with torch.no_grad():
        out = s.nets["AE"].eval()(s.fixed["inp"])[0]
    rows = [s.fixed["x"], s.fixed["inp"], out] if s.cfg.denoise else [s.fixed["x"], out]
    save_grid(torch.cat(rows), s.run / f"reconstructions_epoch{epoch:03d}.png", nrow=8)
    st.epoch, st.step_in_epoch = epoch + 1, 0
    _save_autoencoder(s)
    s.save_state()
    return row


@torch.no_grad()
def latent_codes(ae: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    ae.eval()
    return torch.cat([ae.encode(x[i : i + 1000])[0] for i in range(0, len(x), 1000)]).float().cpu()


def _save_autoencoder(s: GenSession) -> None:
    """autoencoder.safetensors, with the training codes' mean and std (what `sample` draws from for a
    plain autoencoder; a VAE draws from N(0, I))."""
    from smallvision.modelfile import save_checkpoint

    z = latent_codes(s.nets["AE"], s.loader.x[:5000])
    meta = {**s.meta, "net": "AE", "epoch": s.state.epoch - 1, "latent_mean": z.mean(0).tolist(),
            "latent_std": z.std(0).tolist()}
    save_checkpoint(s.run / RunFolder.AUTOENCODER, s.nets["AE"].state_dict(), meta)
    s.nets["AE"].train()


def _finish(s: GenSession) -> dict[str, Any]:
    cfg, st = s.cfg, s.state
    plot_losses(st.history, ["train_loss", "test_loss"], s.run / RunFolder.LOSSES, f"{cfg.model} loss per image")
    z = latent_codes(s.nets["AE"], s.test[0])
    plots.plot_latent(z, s.test[1].cpu(), list(s.info.class_names), s.run / RunFolder.LATENT, cfg.model)
    mse, test_loss = test_error(s)
    summary = {"run": s.run.name, "run_dir": str(s.run), "model": cfg.model, "dataset": s.info.name,
               "latent": int(z.shape[1]), "denoise": cfg.denoise, "test_mse_per_pixel": round(mse, 6),
               "test_loss": round(test_loss, 4), "epochs_run": st.history[-1]["epoch"], "steps": st.step,
               "train_seconds": round(st.elapsed, 2), "stopped": st.stopped, "device": str(s.device)}
    if st.phase == "trained":
        s.enter_phase("tested")
    last = sorted(s.run.path.glob("reconstructions_epoch*.png"))[-1]
    rows = "input, noisy input, output" if cfg.denoise else "input, output"
    figures = [(last.name, f"Test images after epoch {st.history[-1]['epoch']} (rows: {rows})"),
               (RunFolder.LATENT, "Test-set latent codes, coloured by class"), (RunFolder.LOSSES, "Loss per image per epoch")]
    write_gen_report(s, f"{s.run.name}: {cfg.model} on {s.info.name}", summary, figures, [("Per epoch", st.history)])
    s.enter_phase("reported")
    return summary


def sample(checkpoint: str | Path, n: int = 64, seed: int = 0, out: str | Path | None = None,
           device: str = "auto") -> dict[str, Any]:
    """Decode `n` codes drawn from N(0, I) (VAE) or from the training codes' Gaussian (plain autoencoder)."""
    from smallvision.engine.device import resolve_device

    if n < 1:
        raise UsageError(f"-n must be ≥ 1, got {n}")
    dev = resolve_device(device)
    ae, meta = load_net(checkpoint, "AE", dev)
    g = torch.Generator(device=dev).manual_seed(seed)
    z = torch.randn(n, ae.latent, generator=g, device=dev)
    if not ae.variational:
        z = z * torch.tensor(meta["latent_std"], device=dev) + torch.tensor(meta["latent_mean"], device=dev)
    with torch.no_grad():
        images = ae.decode(z)
    path = Path(out) if out else _beside(checkpoint) / f"sample_seed{seed}.png"
    save_grid(images, path)
    return {"grid": str(path), "samples": n, "seed": seed}


def reconstruct(checkpoint: str | Path, files: list[str] | None = None, n: int = 16, out: str | Path | None = None,
                device: str = "auto") -> dict[str, Any]:
    """Input row / output row for your image files, or for the first `n` test images of the run's data."""
    from smallvision.data import load_dataset
    from smallvision.engine.device import resolve_device
    from smallvision.predict import Predictor

    dev = resolve_device(device)
    ae, meta = load_net(checkpoint, "AE", dev)
    c = meta["dataset"]["channels"]
    if files:
        pred = Predictor(ae, {"dataset": {**meta["dataset"], "mean": [0.0] * c, "std": [1.0] * c}}, str(dev))
        x = torch.stack([pred.preprocess(f) for f in files]).to(dev)  # [0, 1] at the model's size
    else:
        cfg = meta["config"]
        x = load_dataset(cfg["dataset"], cfg["data_dir"], cfg["data_args"]).test_x[:n].to(dev).float() / 255
    with torch.no_grad():
        recon = ae(x)[0]
    path = Path(out) if out else _beside(checkpoint) / RunFolder.RECONSTRUCTIONS
    save_grid(torch.cat([x, recon]), path, nrow=len(x))
    return {"grid": str(path), "images": len(x), "mse_per_pixel": round(float(((recon - x) ** 2).mean()), 6)}


def _beside(checkpoint: str | Path) -> Path:
    p = Path(checkpoint)
    return p if p.is_dir() else p.parent
