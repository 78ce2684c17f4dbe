"""GANs, autoencoders and flow-matching models: short runs on small data whose losses move,
deterministic sampling, the quality metrics separating real digits from noise, collapse and copies,
resume after a kill, one-line errors."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from conftest import needs_mnist, run_cli, run_main
from smallvision.errors import UsageError
from smallvision.generative.config import gen_config
from smallvision.generative.losses import GAN_LOSSES
from smallvision.generative.nets import GENERATIVE
from smallvision.modelfile import load_checkpoint

DIGITS = dict(dataset="digits", batch_size=64, score=False)  # 8×8, offline everywhere


def _gan(tmp: Path, **kw):  # type: ignore[no-untyped-def]
    from smallvision.generative.gan import train_gan

    return train_gan(gen_config("gan", **{**DIGITS, "epochs": 4, **kw}), tmp / "runs")


def _gan_cases() -> list[tuple[str, str]]:
    """From the registries, no list here: every GAN model with its own loss, then dcgan with every
    other registered loss (a new model or loss in nets.py is trained here with no edit)."""
    own = [(e.name, e.contract.loss) for e in GENERATIVE if e.contract.kind == "gan"]
    others = [pytest.param("dcgan", loss, marks=pytest.mark.slow)  # ~2.5 CPU-s each: make test-slow
              for loss in GAN_LOSSES.names() if ("dcgan", loss) not in own]
    return own + others


@pytest.mark.parametrize("loss", GAN_LOSSES.names())
def test_every_gan_loss_rewards_a_discriminator_that_tells_real_from_fake(loss):
    """Contract of a GAN loss, on raw scores: the discriminator's loss is lower when real images
    score above fakes than the other way round, and the generator's loss falls as its fakes
    score higher."""
    fn = GAN_LOSSES.get(loss)
    hi, lo = torch.full((16,), 2.0), torch.full((16,), -2.0)
    assert fn(hi, lo, False) < fn(lo, hi, False)
    assert fn(None, hi, True) < fn(None, lo, True)


@pytest.mark.parametrize("model,loss", _gan_cases())
def test_gan_losses_move_and_the_run_folder_is_complete(model, loss, tmp_path):
    s = _gan(tmp_path, model=model, loss=loss, model_args={"width": 8} if model.startswith("dcgan") else {"g_hidden": 64})
    run = Path(s["run_dir"])
    hist = json.loads((run / "report.json").read_text())["history"]
    assert len(hist) == 4 and all(torch.isfinite(torch.tensor([h["d_loss"], h["g_loss"]])).all() for h in hist)
    assert len({round(h["d_loss"], 4) for h in hist}) > 1 and len({round(h["g_loss"], 4) for h in hist}) > 1
    for f in ("generator.safetensors", "samples.gif", "losses.png", "report.html", "summary.json", "config.json",
              "samples_epoch001.png", "samples_epoch004.png"):
        assert (run / f).is_file(), f
    assert (run / "samples_epoch001.png").read_bytes() != (run / "samples_epoch004.png").read_bytes()
    meta = load_checkpoint(run / "generator.safetensors")[1]
    assert meta["net"] == "G" and meta["model"] == model and meta["dataset"]["height"] == 8
    assert "z_dim" in meta["model_args"]  # every builder default recorded: a later default change cannot break it


@pytest.mark.slow  # ~11 CPU-s: the default suite stays under 3 min on 2 cores (CI runs make test-slow)
def test_sampling_is_deterministic_for_a_seed(tmp_path):
    from smallvision.generative.gan import sample

    run = _gan(tmp_path, epochs=1)["run_dir"]
    r = run_cli("gan", "sample", run, "-n", "16", "--seed", "0", "--out", str(tmp_path / "a.png"))  # the command line
    assert r.returncode == 0, r.stderr
    sample(run, 16, seed=0, out=tmp_path / "b.png"), sample(run, 16, seed=1, out=tmp_path / "c.png")  # and the API
    grids = [(tmp_path / f"{name}.png").read_bytes() for name in "abc"]
    assert grids[0] == grids[1] and grids[0] != grids[2]


def test_truncation_keeps_the_noise_inside_its_bound_and_trades_variety_away(tmp_path):
    """The truncation trick: every noise entry within ±T, the same seed the same noise, off (0) is
    plain randn; a trained generator's samples spread less in pixels when truncated; `gan sample
    --truncation` takes it, a bad value is a one-line error, and a run's own T is the default."""
    from smallvision.generative.gan import generate, sample, truncated_noise
    from smallvision.generative.loop import load_net

    g = lambda: torch.Generator().manual_seed(3)  # noqa: E731
    z = truncated_noise(4000, 16, g(), torch.device("cpu"), 0.5)
    assert z.abs().max() <= 0.5 and torch.equal(z, truncated_noise(4000, 16, g(), torch.device("cpu"), 0.5))
    assert z.std() < 0.35  # a normal truncated at ±0.5 has std 0.28; an untruncated one 1
    assert torch.equal(truncated_noise(8, 16, g(), torch.device("cpu"), 0.0), torch.randn(8, 16, generator=g()))
    s = _gan(tmp_path, epochs=1, truncation=0.5)
    assert s["truncation"] == 0.5
    G, _ = load_net(s["run_dir"], "G", torch.device("cpu"))
    free, cut = (generate(G, 400, 0, torch.device("cpu"), truncation=t) for t in (0.0, 0.3))
    assert cut.std(0).mean() < free.std(0).mean() and not cut.requires_grad  # sampling builds no graph
    assert sample(s["run_dir"], 8, out=tmp_path / "a.png")["truncation"] == 0.5  # the run's own
    r = run_main("gan", "sample", s["run_dir"], "-n", "8", "--truncation", "0.01")
    assert r.returncode == 2 and "--truncation must be 0 (off)" in r.stderr


@pytest.mark.slow  # ~7 CPU-s: the default suite stays under 3 min on 2 cores (CI runs make test-slow)
def test_conditional_generator_draws_a_requested_class(tmp_path):
    from smallvision.generative.gan import generate
    from smallvision.generative.loop import load_net

    run = _gan(tmp_path, epochs=1, conditional=True)["run_dir"]
    G, _ = load_net(run, "G", torch.device("cpu"))
    a, b = generate(G, 8, 0, torch.device("cpu"), label=3), generate(G, 8, 0, torch.device("cpu"), label=7)
    assert a.shape == (8, 1, 8, 8) and not torch.equal(a, b)  # same noise, another class: other images
    r = run_cli("gan", "sample", run, "--label", "12")
    assert r.returncode == 2 and "class 0-9" in r.stderr


@pytest.mark.parametrize("model,kw", [pytest.param("ae-mlp", {}, marks=pytest.mark.slow), ("ae-conv", {"denoise": 0.3}),
                                      pytest.param("vae-conv", {}, marks=pytest.mark.slow)])  # the slow ones: make test-slow
def test_autoencoder_learns_and_draws(model, kw, tmp_path):
    from smallvision.generative.autoencoder import reconstruct, sample, train_autoencoder

    s = train_autoencoder(gen_config("autoencoder", dataset="digits", model=model, epochs=6, batch_size=32, lr=2e-3,
                                     **kw), tmp_path / "runs")
    run = Path(s["run_dir"])
    hist = json.loads((run / "report.json").read_text())["history"]
    assert hist[-1]["test_mse"] < 0.8 * hist[0]["test_mse"]  # reconstructions improve
    assert s["test_mse_per_pixel"] == pytest.approx(hist[-1]["test_mse"], rel=1e-4)
    for f in ("latent.png", "losses.png", "autoencoder.safetensors", "report.html", "reconstructions_epoch006.png"):
        assert (run / f).is_file(), f
    a, b = sample(run, 9, seed=2, out=tmp_path / "a.png"), sample(run, 9, seed=2, out=tmp_path / "b.png")
    assert Path(a["grid"]).read_bytes() == Path(b["grid"]).read_bytes()
    assert reconstruct(run, n=8, out=tmp_path / "r.png")["images"] == 8


def test_metric_formulas_on_known_cases():
    """Inception Score: K for confident, even classes, 1 for one class or for unsure outputs; the
    kernel distance near 0 for one distribution and far above it for a shifted one; nearest
    distances as a brute-force search finds them."""
    from smallvision.generative.score import inception_score, kernel_distance, nearest_distances

    eye = torch.eye(10).repeat(50, 1)
    assert inception_score(eye) == pytest.approx(10, rel=1e-6)
    assert inception_score(torch.eye(10)[[3] * 500]) == pytest.approx(1, rel=1e-6)
    assert inception_score(torch.full((500, 10), 0.1)) == pytest.approx(1, rel=1e-6)
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(2000, 16, generator=g), torch.randn(2000, 16, generator=g)
    same, _ = kernel_distance(a, b, subsets=20, size=500)
    shifted, _ = kernel_distance(a, b + 0.5, subsets=20, size=500)
    assert abs(same) < 0.01 < shifted
    bank, q = torch.rand(300, 20, generator=g), torch.rand(70, 20, generator=g)
    assert torch.allclose(nearest_distances(q, bank, chunk=16), torch.cdist(q, bank).min(1).values, atol=1e-4)


def test_the_score_tells_real_images_from_noise_a_collapsed_generator_and_copies(tmp_path):
    """On the 8×8 digits (an mnist-accurate scorer trained in 5 s; 76 % of the real test images
    confident, an Inception Score of 7.5): real test images score a high Inception
    Score and distances near the floor; noise and one repeated image score far worse; training
    images handed in as samples are flagged as near copies, unseen real images are not."""
    from smallvision.data import load_dataset
    from smallvision.generative.score import default_scorer, score_images, score_text

    scorer = default_scorer("digits", {}, None, tmp_path, recipe="mnist-accurate")
    assert default_scorer("digits", {}, None, tmp_path, recipe="mnist-accurate") == scorer  # trained once, then reused
    d = load_dataset("digits")
    n = len(d.test_x)
    real = d.test_x.float() / 255
    noise = torch.rand(n, *real.shape[1:], generator=torch.Generator().manual_seed(0))
    collapsed = real[:1].repeat(n, 1, 1, 1)
    copies = d.train_x[:n].float() / 255
    r, z, c, m = (score_images(x, scorer, "digits", {}, None, torch.device("cpu")) for x in (real, noise, collapsed, copies))
    assert r["inception_score"] > 6 and r["classes_with_5pct"] == 10 and r["memorised_pct"] < 15
    floor = m["floor"]
    assert floor["samples"] == n and m["frechet_distance"] < 2 * floor["frechet_distance"] + 0.5  # real: near the floor
    assert m["memorised_pct"] == 100.0  # training images handed in as samples: every one a near copy
    for bad in (z, c):
        assert bad["inception_score"] < r["inception_score"] - 3
        assert bad["frechet_distance"] > 10 * floor["frechet_distance"] and bad["kid"] > 10 * max(m["kid"], 1e-3)
    assert c["classes_with_5pct"] == 1 and c["class_entropy"] == 0.0 and z["memorised_pct"] == 0.0
    assert "Inception Score" in score_text(r) and "near copies" in score_text(r)


@pytest.mark.slow  # a real-data figure (the scorer trains in 15 s, 10 000 images scored): make test-all
@needs_mnist
def test_real_mnist_test_images_score_near_the_maximum_with_the_default_scorer(tmp_path):
    from smallvision.data import load_dataset
    from smallvision.generative.score import default_scorer, score_images

    scorer = default_scorer("mnist", {}, None, tmp_path)
    real = load_dataset("mnist").test_x.float() / 255
    r = score_images(real, scorer, "mnist", {}, None, torch.device("cpu"))
    assert r["inception_score"] >= 9.5, r
    assert r["confident_pct"] > 95 and r["floor"]["samples"] == 10000


DIFFUSION = [e.name for e in GENERATIVE if e.contract.kind == "diffusion"]  # from the registry: a new one is tested


def _flow(tmp: Path, **kw):  # type: ignore[no-untyped-def]
    from smallvision.generative.diffusion import train_diffusion

    return train_diffusion(gen_config("diffusion", **{**DIGITS, "epochs": 3, "model_args": {"width": 16}, **kw}),
                           tmp / "runs")


@pytest.mark.slow  # ~20 CPU-s: the default suite stays under 3 min on 2 cores (CI runs make test-slow)
@pytest.mark.parametrize("model", DIFFUSION)
def test_a_flow_model_learns_and_samples_the_same_images_for_a_seed(model, tmp_path):
    from smallvision.generative.diffusion import sample

    s = _flow(tmp_path, model=model, epochs=4, steps=4, score=True, score_samples=300, score_every=0.05)
    run = Path(s["run_dir"])
    hist = json.loads((run / "report.json").read_text())["history"]
    assert len(hist) == 4 and hist[-1]["loss"] < 0.8 * hist[0]["loss"]  # the velocity error falls
    assert all(1 <= h["inception_score"] <= 10 and h["frechet_distance"] >= 0 for h in hist)  # the quality curve
    sc = s["score"]
    assert sc["samples"] == 300 and sc["floor"]["samples"] == 300 and 0 <= sc["memorised_pct"] <= 100
    assert s["evaluations_per_sample"] == 7 and s["steps"] == 4  # Heun: 2 calls per step but the last
    for f in ("generator.safetensors", "samples.gif", "losses.png", "quality.png", "report.html", "samples_epoch004.png"):
        assert (run / f).is_file(), f
    a, b = sample(run, 16, seed=0, out=tmp_path / "a.png"), sample(run, 16, seed=0, out=tmp_path / "b.png")
    c = sample(run, 16, seed=1, out=tmp_path / "c.png")
    grids = [Path(x["grid"]).read_bytes() for x in (a, b, c)]
    assert grids[0] == grids[1] != grids[2]
    r = run_cli("diffusion", "sample", str(run), "-n", "4", "--steps", "2", "--sampler", "euler", "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout.splitlines()[-1])["evaluations_per_sample"] == 2


@pytest.mark.slow  # ~7 CPU-s: the default suite stays under 3 min on 2 cores (CI runs make test-slow)
def test_a_conditional_flow_draws_the_class_asked_and_guidance_mixes_both_velocities(tmp_path):
    from smallvision.generative.diffusion import generate
    from smallvision.generative.loop import load_net

    run = _flow(tmp_path, epochs=2, conditional=True, steps=3, time_sampling="logit-normal")["run_dir"]
    net, meta = load_net(run, "G", torch.device("cpu"))
    assert meta["config"]["time_sampling"] == "logit-normal"
    cpu = torch.device("cpu")
    three, asked = generate(net, 8, 0, cpu, 3, "heun", label=3)
    seven, _ = generate(net, 8, 0, cpu, 3, "heun", label=7)
    guided, _ = generate(net, 8, 0, cpu, 3, "heun", label=3, guidance=3.0)
    assert three.shape == (8, 1, 8, 8) and asked.tolist() == [3] * 8
    assert not torch.equal(three, seven) and not torch.equal(three, guided)
    mixed, asked = generate(net, 20, 0, cpu, 2, "euler")
    assert asked.tolist() == [i % 10 for i in range(20)]  # the classes in turn
    r = run_cli("diffusion", "sample", run, "--label", "12")
    assert r.returncode == 2 and "class 0-9" in r.stderr


@pytest.mark.slow  # ~8 CPU-s: the default suite stays under 3 min on 2 cores (CI runs make test-slow)
def test_a_self_guided_flow_conditions_on_clusters_and_guides_towards_them(tmp_path):
    """--clusters K on a flow: no label read, the checkpoint records the clusters, samples draw
    them in their shares and ask for no class (a cluster is not a class), guidance is allowed."""
    from smallvision.generative.diffusion import generate, sample
    from smallvision.generative.loop import load_net

    s = _flow(tmp_path, epochs=1, clusters=4, steps=2, guidance=2.0, score=True, score_samples=100)
    net, meta = load_net(s["run_dir"], "G", torch.device("cpu"))
    assert net.embed.num_embeddings == 5 and len(meta["clusters"]["shares"]) == 4 and s["clusters"] == 4
    assert "asked_class_pct" not in s["score"]  # the clusters are not scored as classes
    cpu = torch.device("cpu")
    a, asked = generate(net, 6, 0, cpu, 2, "euler", guidance=2.0, shares=meta["clusters"]["shares"])
    b, _ = generate(net, 6, 0, cpu, 2, "euler", guidance=2.0, shares=meta["clusters"]["shares"])
    free, _ = generate(net, 6, 0, cpu, 2, "euler", guidance=0.0, shares=meta["clusters"]["shares"])
    assert asked is None and torch.equal(a, b) and not torch.equal(a, free)
    r = run_cli("diffusion", "sample", s["run_dir"], "-n", "4", "--label", "4")
    assert r.returncode == 2 and "cluster 0-3" in r.stderr
    assert sample(s["run_dir"], 4, label=3, guidance=3.0, out=tmp_path / "g.png")["guidance"] == 3.0


@pytest.mark.slow  # a killed subprocess and its resume: make test-all
def test_a_flow_run_killed_mid_epoch_resumes_to_the_same_weights(tmp_path):
    from safetensors.torch import load_file

    flags = ["--dataset", "digits", "--epochs", "3", "--no-score", "--model-arg", "width=16", "--batch-size", "64",
             "--steps", "2", "--runs-dir", str(tmp_path), "--json"]
    whole = run_cli("diffusion", "train", *flags, "--name", "whole")
    assert whole.returncode == 0, whole.stderr
    cmd = [sys.executable, "-m", "smallvision", "diffusion", "train", *flags, "--name", "cut"]
    r = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "SMALLVISION_KILL_AT": "step-30"},
                       timeout=300)
    assert r.returncode == -signal.SIGKILL
    r = run_cli("diffusion", "train", "--resume", str(tmp_path / "cut"), "--json")
    assert r.returncode == 0, r.stderr
    a, b = (load_file(tmp_path / name / "generator.safetensors") for name in ("whole", "cut"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.slow  # a killed subprocess and its resume (16 s): make test-slow, run by CI
def test_a_gan_killed_after_training_resumes_to_the_end(tmp_path):
    cmd = [sys.executable, "-m", "smallvision", "gan", "train", "--dataset", "digits", "--epochs", "2", "--no-score",
           "--model-arg", "width=8", "--runs-dir", str(tmp_path), "--name", "g", "--json"]
    r = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "SMALLVISION_KILL_AT": "trained"}, timeout=300)
    assert r.returncode == -signal.SIGKILL
    assert not (tmp_path / "g" / "report.html").exists()
    r = run_cli("gan", "train", "--resume", str(tmp_path / "g"), "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout.splitlines()[-1])["epochs_run"] == 2 and (tmp_path / "g" / "report.html").is_file()
    r = run_cli("gan", "train", "--resume", str(tmp_path / "g"))
    assert r.returncode == 2 and "already finished" in r.stderr


@pytest.mark.parametrize("args,msg", [
    (["gan", "train", "--model", "ae-conv", "--dataset", "digits"], "is an autoencoder, not a GAN"),
    (["gan", "train", "--dataset", "fake:1x10x10"], "divisible by 4"),
    (["gan", "train", "--loss", "wasserstein", "--dataset", "digits"], "unknown GAN loss 'wasserstein'"),
    (["gan", "train", "--lr", "0", "--dataset", "digits"], "--lr must be > 0"),
    (["autoencoder", "train", "--model", "vae", "--dataset", "digits"], "did you mean vae-mlp, vae-conv"),
    (["gan", "sample", "nowhere"], "no such checkpoint"),
    (["diffusion", "train", "--model", "dcgan", "--dataset", "digits"], "is a GAN, not a diffusion model"),
    (["diffusion", "train", "--guidance", "2", "--dataset", "digits"], "it needs --conditional"),
    (["diffusion", "train", "--dataset", "fake:1x9x9"], "patch 2 does not divide the 9×9 images"),
    (["diffusion", "train", "--sampler", "rk4", "--dataset", "digits"], "rk4"),
    (["gan", "train", "--truncation", "0.01", "--dataset", "digits"], "--truncation must be 0 (off) or at least 0.05"),
    (["gan", "train", "--top-k", "0.5", "--dataset", "digits"], "No such option"),
    (["gan", "train", "--recipe", "flow-selfguided", "--dataset", "digits"], "is a diffusion recipe"),
    (["gan", "train", "--recipe", "mnist-fast"], "trains a classifier"),
    (["train", "--recipe", "gan-nolabel"], "smallvision gan train --recipe gan-nolabel"),
    (["autoencoder", "train", "--guidance", "2", "--dataset", "digits"], "No such option"),
])
def test_bad_generative_input_is_one_line(args, msg, tmp_path):
    r = run_main(*args, "--runs-dir", str(tmp_path)) if args[1] == "train" else run_main(*args)
    assert r.returncode == 2 and msg in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr


def test_two_time_scale_learning_rates(tmp_path):
    from smallvision.generative.loop import open_session

    s = open_session(gen_config("gan", dataset="digits", lr=1e-4, d_lr=4e-4), tmp_path, "", None)
    try:
        assert s.optimizers["optim_g"].param_groups[0]["lr"] == 1e-4
        assert s.optimizers["optim_d"].param_groups[0]["lr"] == 4e-4
    finally:
        s.run.unlock()


def test_spectral_norm_bounds_every_discriminator_layer():
    """--model-arg sn=true: after a few training-mode passes (power iteration), each layer's largest
    singular value is 1; without it the same layers are far from 1."""
    from smallvision.data import load_dataset
    from smallvision.generative.nets import create_generative

    d = load_dataset("digits")
    x = d.test_x[:32].float() / 255 * 2 - 1
    for sn in (True, False):
        torch.manual_seed(0)
        D = create_generative("dcgan", d.info, "gan", width=8, sn=sn, conditional=True)["D"].train()
        with torch.no_grad():
            for _ in range(30):
                D(x, d.test_y[:32])
        norms = [torch.linalg.matrix_norm(m.weight.detach().flatten(1), 2).item()
                 for m in D.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))]
        assert len(norms) == 3
        if sn:
            assert all(abs(n - 1) < 0.05 for n in norms), norms
        else:
            assert not all(abs(n - 1) < 0.05 for n in norms), norms


@pytest.mark.parametrize("model", [e.name for e in GENERATIVE if e.contract.kind == "gan"])
def test_every_discriminator_scores_each_image_on_its_own(model):
    """gan_step sends the real and generated batches through D stacked, in one call: right only if
    D's score of an image does not depend on the rest of its batch (no batch statistics), which
    every registered GAN's discriminator must keep."""
    from smallvision.data import load_dataset

    torch.manual_seed(0)
    D = GENERATIVE.entry(model).fn(load_dataset("digits").info, conditional=True)["D"].train()
    a, b, ya, yb = torch.randn(6, 1, 8, 8), torch.randn(6, 1, 8, 8), torch.arange(6), torch.arange(6).flip(0)
    with torch.no_grad():
        D(a, ya)  # spectral norm's power iteration settles in training mode; then compare in eval
        D.eval()
        torch.testing.assert_close(D(torch.cat([a, b]), torch.cat([ya, yb])), torch.cat([D(a, ya), D(b, yb)]))


def test_mode_seeking_term_punishes_a_generator_that_ignores_its_noise(tmp_path):
    """MSGAN's term is large when two noise vectors give the same image, small when they differ; a
    conditional run with it, a deeper generator and spectral norm trains and its losses move."""
    from smallvision.generative.gan import mode_seeking_loss

    z = torch.randn(32, 16)
    varied = torch.rand(32, 1, 8, 8) * 2 - 1
    same = varied[:1].expand(32, -1, -1, -1) + 1e-3 * torch.randn(32, 1, 8, 8)
    assert mode_seeking_loss(same, z) > 50 * mode_seeking_loss(varied, z)
    s = _gan(tmp_path, epochs=2, conditional=True, mode_seeking=1.0, loss="hinge",
             model_args={"width": 8, "extra": 1, "sn": True})
    hist = json.loads((Path(s["run_dir"]) / "report.json").read_text())["history"]
    assert all(torch.isfinite(torch.tensor([h["d_loss"], h["g_loss"]])).all() for h in hist)
    assert hist[0]["g_loss"] != hist[1]["g_loss"]
    G = load_checkpoint(Path(s["run_dir"]) / "generator.safetensors")[0]
    assert sum(1 for k, v in G.items() if k.endswith("weight") and v.dim() == 4) == 4  # 2 ConvT + 2 extra 3×3


def test_channels_last_and_a_narrower_discriminator(tmp_path):
    """--channels-last puts every convolution's weights in the channels_last layout for training
    and the generator it trains is the contiguous layout's (same seed, fp32, to float rounding);
    the saved file loads anywhere. d_width narrows only the discriminator."""
    from smallvision.generative.loop import open_session

    s = open_session(gen_config("gan", **DIGITS, channels_last=True, model_args={"width": 8}), tmp_path / "open", "", None)
    convs = [p for net in s.nets.values() for p in net.parameters() if p.dim() == 4]  # (a 1-channel kernel is both)
    assert all(w.is_contiguous(memory_format=torch.channels_last) for w in convs) and sum(not w.is_contiguous() for w in convs) >= 3
    runs = [_gan(tmp_path / str(cl), epochs=1, precision="fp32", channels_last=cl, model_args={"width": 8, "d_width": 4})
            for cl in (True, False)]
    (wa, meta), (wb, _) = (load_checkpoint(Path(r["run_dir"]) / "generator.safetensors") for r in runs)
    assert wa.keys() == wb.keys() and all(torch.allclose(wa[k], wb[k], atol=1e-4) for k in wa)
    assert meta["model_args"]["d_width"] == 4
    count = lambda net: sum(p.numel() for p in net.parameters())  # noqa: E731
    (g8, d8), (g4, d4) = ((count(n["G"]), count(n["D"])) for n in (
        GENERATIVE.entry("dcgan").fn(s.info, width=8, d_width=dw) for dw in (0, 4)))
    assert g4 == g8 and d4 < d8 / 2 and runs[0]["params"] == {"G": g4, "D": d4}


def test_a_deeper_discriminator_adds_3x3_blocks_to_the_discriminator_only():
    """d_extra=N: N stride-1 3×3 convolutions at H/4 in D; G is untouched and D still scores each
    image on its own (so it keeps the one stacked call) and under spectral norm."""
    from smallvision.data import load_dataset

    info = load_dataset("digits").info
    nets = [GENERATIVE.entry("dcgan").fn(info, width=8, d_extra=n) for n in (0, 2)]
    convs = [[m for m in n["D"].modules() if isinstance(m, torch.nn.Conv2d)] for n in nets]
    assert len(convs[1]) == len(convs[0]) + 2 and all(c.kernel_size == (3, 3) and c.stride == (1, 1) for c in convs[1][2:])
    assert all(hasattr(c, "parametrizations") for c in convs[1])
    assert [p.shape for p in nets[0]["G"].parameters()] == [p.shape for p in nets[1]["G"].parameters()]
    x = torch.rand(5, *info.input_shape) * 2 - 1
    assert nets[1]["D"](x).shape == (5,)
    with pytest.raises(UsageError, match="d_extra count blocks"):
        GENERATIVE.entry("dcgan").fn(info, d_extra=-1)


def test_lr_decay_is_a_function_of_the_step_over_the_step_budget(tmp_path):
    """--lr-decay F: the rates hold until the last F of the step budget (--epochs × the steps of an
    epoch), then fall linearly to 0 at its end; a function of the step alone (the registered
    hold-decay schedule), so --max-time and the machine's speed do not change it. A run's last
    step uses a rate near 0."""
    from smallvision.engine.resume import load_resume
    from smallvision.generative.gan import lr_scale

    cfg = gen_config("gan", epochs=40, lr_decay=0.5)
    assert lr_scale(cfg, 200, 10) == 1 and lr_scale(cfg, 300, 10) == 0.5 and lr_scale(cfg, 400, 10) == 0
    assert lr_scale(gen_config("gan", epochs=40, lr_decay=0.5, max_time=5), 300, 10) == 0.5  # no clock
    with pytest.raises(UsageError, match="lr_decay|lr-decay"):
        gen_config("gan", lr_decay=1.5).validate()

    s = _gan(tmp_path, epochs=2, lr=1e-3, d_lr=2e-3, lr_decay=1.0, model_args={"width": 8})
    optimizers = load_resume(Path(s["run_dir"]))[1]["resume"]["optimizers"]
    lrs = {k: v["param_groups"][0]["lr"] for k, v in optimizers.items()}  # the last step's
    assert 0 < lrs["optim_g"] < 1e-3 * 0.1 and 0 < lrs["optim_d"] < 2e-3 * 0.1, lrs


def test_each_gan_defaults_to_its_own_loss():
    """Without --loss a GAN trains with the loss its registry entry names (dcgan: hinge, the
    tutorial's fully connected GAN: bce); a given --loss wins."""
    assert gen_config("gan").loss == "hinge"
    assert gen_config("gan", model="gan-mlp").loss == "bce"
    assert gen_config("gan", loss="lsgan").loss == "lsgan"
    assert gen_config("gan", {"loss": "bce"}).loss == "bce"  # a saved config.json keeps its loss


@pytest.mark.slow  # a real-data accuracy threshold: make test-all
def test_clusters_stand_in_for_labels(tmp_path):
    """--clusters K: a GAN conditioned on K k-means clusters of the pixels (no label read); the
    checkpoint knows the clusters' shares, samples draw clusters in those shares, --label picks one."""
    from smallvision.data import load_dataset
    from smallvision.generative.clusters import cluster_labels
    from smallvision.generative.loop import load_net

    d = load_dataset("digits")
    ids, info = cluster_labels(d.train_x, 4, seed=0)
    again, _ = cluster_labels(d.train_x, 4, seed=0)
    assert torch.equal(ids, again) and set(ids.tolist()) == {0, 1, 2, 3} and abs(sum(info["shares"]) - 1) < 1e-9
    run = _gan(tmp_path, epochs=1, clusters=4, model_args={"width": 8})["run_dir"]
    G, meta = load_net(run, "G", torch.device("cpu"))
    assert G.embed.num_embeddings == 4 and meta["clusters"]["shares"] == info["shares"]
    assert json.loads((Path(run) / "summary.json").read_text())["clusters"] == 4
    r = run_cli("gan", "sample", run, "-n", "8", "--label", "3", "--out", str(tmp_path / "c3.png"))
    assert r.returncode == 0 and (tmp_path / "c3.png").is_file(), r.stderr
    r = run_cli("gan", "sample", run, "-n", "8", "--label", "4")
    assert r.returncode == 2 and "cluster 0-3" in r.stderr
    r = run_cli("gan", "train", "--dataset", "digits", "--clusters", "4", "--conditional", "--runs-dir", str(tmp_path))
    assert r.returncode == 2 and "drop --conditional" in r.stderr


def test_generate_draws_clusters_in_their_shares():
    from smallvision.generative.gan import generate
    from smallvision.generative.nets import Generator

    seen: list[torch.Tensor] = []

    class Record(torch.nn.Module):
        def forward(self, z: torch.Tensor) -> torch.Tensor:
            return torch.zeros(len(z), 1, 2, 2)

    G = Generator(Record(), 4, 3, conditional=True)
    G.embed.register_forward_hook(lambda m, inp, out: seen.append(inp[0]))
    generate(G, 3000, seed=0, device=torch.device("cpu"), num_classes=3, shares=[0.7, 0.2, 0.1])
    counts = torch.bincount(torch.cat(seen), minlength=3).float() / 3000
    assert torch.allclose(counts, torch.tensor([0.7, 0.2, 0.1]), atol=0.03), counts


def test_a_version_1_dcgan_checkpoint_still_loads(tmp_path):
    """dcgan's defaults changed (extra=1, sn=true); a checkpoint written before builders' defaults
    were recorded (model_args holds only what was given) rebuilds as version 1 did."""
    from smallvision.data import load_dataset
    from smallvision.generative.loop import load_net
    from smallvision.generative.nets import create_generative
    from smallvision.modelfile import save_checkpoint

    info = load_dataset("digits").info
    G = create_generative("dcgan", info, "gan", width=8, extra=0, sn=False)["G"]
    meta = {"kind": "gan", "model": "dcgan", "model_args": {"width": 8}, "dataset": info.to_dict(), "net": "G"}
    save_checkpoint(tmp_path / "generator.safetensors", G.state_dict(), meta)
    loaded, _ = load_net(tmp_path, "G", torch.device("cpu"))
    assert torch.equal(loaded(torch.zeros(2, 64)), G.eval()(torch.zeros(2, 64)))


def test_power_ema_spans_the_same_share_of_any_run():
    """--ema-rel σ: EDM2's power-function average weighs step τ of T as τ^γ, a profile whose width
    relative to T is σ at T = 500 as at T = 5 000: averaging x = τ/T and x² gives the profile's mean
    and spread, so the spread must come out as σ, with no γ written here."""
    from torch.optim.swa_utils import AveragedModel

    from smallvision.generative.loop import power_ema

    class Pair(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.p = torch.nn.Parameter(torch.zeros(2, dtype=torch.float64))

    for sigma in (0.05, 0.2):
        for steps in (500, 5000):
            net = Pair()
            avg = AveragedModel(net, multi_avg_fn=power_ema(sigma))
            for tau in range(1, steps + 1):
                net.p.data = torch.tensor([tau / steps, (tau / steps) ** 2], dtype=torch.float64)
                avg.update_parameters(net)
            mean, square = avg.module.p.tolist()
            assert abs((square - mean ** 2) ** 0.5 - sigma) < 0.02 * sigma + 1 / steps, (sigma, steps, mean, square)
    with pytest.raises(UsageError, match="ema_rel|ema-rel|0.28"):
        gen_config("gan", **DIGITS, ema_rel=0.3)


def test_the_projection_gathers_rows_before_dividing_by_sigma():
    """nets.embed_rows: a spectrally normalised class embedding read row by row gives what the
    whole normalised table gives, with the same gradients and the same power-iteration step on
    u and v (it only skips dividing the rows no image asked for); in eval mode u and v stay."""
    import copy

    from torch.nn.utils.parametrizations import spectral_norm

    from smallvision.generative.nets import embed_rows

    torch.manual_seed(0)
    a = spectral_norm(torch.nn.Embedding(50, 40))
    b = copy.deepcopy(a)
    y, g = torch.randint(0, 50, (16,)), torch.randn(16, 40)
    ra, rb = a(y), embed_rows(b, y)
    torch.testing.assert_close(rb, ra)
    (ra * g).sum().backward()
    (rb * g).sum().backward()
    orig = lambda m: m.parametrizations.weight.original  # noqa: E731
    torch.testing.assert_close(orig(b).grad, orig(a).grad)
    sa, sb = a.parametrizations.weight[0], b.parametrizations.weight[0]
    assert torch.equal(sa._u, sb._u) and torch.equal(sa._v, sb._v)
    u = sb._u.clone()
    b.eval()
    torch.testing.assert_close(embed_rows(b, y), a.eval()(y))
    assert torch.equal(sb._u, u)
    plain = torch.nn.Embedding(5, 3)
    assert torch.equal(embed_rows(plain, torch.tensor([4])), plain.weight[4:5])


def test_a_gan_step_trains_both_networks_and_leaves_the_discriminator_trainable(tmp_path):
    """The generator's update reads D with D's weights frozen (only the input gradient is needed);
    after the step D must be trainable again, and both networks have moved."""
    from smallvision.generative.gan import gan_step
    from smallvision.generative.loop import open_session

    s = open_session(gen_config("gan", **DIGITS, model="dcgan", model_args={"width": 8}, conditional=True,
                                mode_seeking=0.1),
                     tmp_path / "runs", "", None)
    G, D = s.nets["G"], s.nets["D"]
    before = {k: [p.detach().clone() for p in n.parameters()] for k, n in s.nets.items()}
    xb, yb = next(iter(s.loader))
    gan_step(s, xb, yb)
    assert all(p.requires_grad for p in D.parameters())
    for k, n in (("G", G), ("D", D)):
        assert any(not torch.equal(p, q) for p, q in zip(n.parameters(), before[k], strict=True)), k


@pytest.mark.parametrize("kind,ema,ema_rel", [("diffusion", 0.999, 0.0), ("gan", 0.999, 0.0), ("gan", 0.0, 0.05)])
def test_every_average_moves_the_weights_and_copies_batchnorm_counters(kind, ema, ema_rel):
    """loop.average_fn, each kind of generator average, on a net with BatchNorm (an integer step
    counter among its buffers): the float weights move part of the way, the counter is copied."""
    from torch.optim.swa_utils import AveragedModel

    from smallvision.generative.loop import average_fn

    net = torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3), torch.nn.BatchNorm2d(2))
    avg = AveragedModel(net, multi_avg_fn=average_fn(kind, ema, ema_rel), use_buffers=True)
    for _ in range(3):
        with torch.no_grad():
            net[0].weight.add_(1.0)
        net(torch.randn(4, 1, 5, 5))  # a training-mode pass: the BatchNorm counter counts it
        avg.update_parameters(net)
    w0 = avg.module[0].weight
    assert not torch.equal(w0, net[0].weight) and (w0 - net[0].weight).abs().max() < 3.0
    assert int(avg.module[1].num_batches_tracked) == int(net[1].num_batches_tracked) == 3


OLD_RUN = Path(__file__).parent / "fixtures" / "gan-v0.1"  # smallvision 0.1 (da0698c): a dcgan on 3 clusters,
# --ema-rel 0.05 --lr-decay 0.5 --truncation 2, stopped by SIGTERM in epoch 3 of 3 (config.json, the
# generator of epoch 2, the resume state): every family's settings and the removed knobs (off) recorded


def test_a_run_of_version_0_1_still_samples_and_resumes(tmp_path):
    """A 0.1 run folder (settings since removed, at their "off" values; other families' fields in its
    config) samples with `gan sample` and resumes to the end with `gan train --resume`; one with a
    removed setting on is a one-line error naming the version."""
    import shutil

    run = tmp_path / "gan-v0.1"
    shutil.copytree(OLD_RUN, run)
    r = run_main("gan", "sample", str(run), "-n", "8", "--json")
    assert r.returncode == 0 and json.loads(r.stdout.strip().splitlines()[-1])["truncation"] == 2.0, r.stderr
    r = run_main("gan", "train", "--resume", str(run), "--json", "--runs-dir", str(tmp_path))
    assert r.returncode == 0, r.stderr
    summary = json.loads(r.stdout.strip().splitlines()[-1])
    assert summary["epochs_run"] == 3 and summary["clusters"] == 3

    cfg = json.loads((OLD_RUN / "config.json").read_text())
    (tmp_path / "old.json").write_text(json.dumps({**cfg, "top_k": 0.5}))
    r = run_main("gan", "train", "--config", str(tmp_path / "old.json"), "--runs-dir", str(tmp_path))
    assert r.returncode == 2 and "removed in smallvision 0.2" in r.stderr and len(r.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("name", ["gan-nolabel", "flow-selfguided", "vae-2d", *(pytest.param(n, marks=pytest.mark.slow)
                                  for n in ("gan-conditional", "gan-mlp", "flow-conditional"))])
def test_every_generative_recipe_resolves_lists_prints_and_trains_from_python(name, tmp_path):
    """A generative recipe is a named table: `recipes` lists it, `print-config --recipe` prints it as
    a TOML that `--config` reads back to the same settings, and the Python API trains it (here a
    few steps on the 8×8 digits: the recipe's values under the overrides)."""
    import smallvision
    from smallvision.recipes import recipe_kind

    kind = recipe_kind(name)
    cfg = gen_config(kind, recipe=name)
    assert cfg.recipe == name and cfg.epochs >= 10 and cfg.dataset == "mnist"
    assert name in run_main("recipes").stdout
    printed = run_main("print-config", "--recipe", name)
    assert printed.returncode == 0, printed.stderr
    (tmp_path / "r.toml").write_text(printed.stdout)
    from smallvision.cli.generative import _read

    assert gen_config(kind, _read(tmp_path / "r.toml", kind)).to_dict() == {**cfg.to_dict(), "recipe": ""}
    over = {"dataset": "digits", "epochs": 1, "train_limit": 128, "batch_size": 64, "report": False}
    if kind != "autoencoder":
        over.update(score=False, gif=False, clusters=3 if cfg.clusters else 0)
    if cfg.model.startswith("dcgan"):
        over["model_args"] = {"width": 4}
    if cfg.model == "unet":
        over["model_args"] = {"width": 8}
    s = smallvision.train_generative(kind, name, runs_dir=tmp_path / "runs", **over)
    saved = json.loads((Path(s["run_dir"]) / "config.json").read_text())
    assert saved["recipe"] == name and saved["epochs"] == 1 and saved["model"] == cfg.model


def test_gan_choose_picks_the_truncation_on_training_images_and_writes_it_down(tmp_path):
    """`gan choose`: each truncation's samples (noise seed 1000) judged against seeded training
    images, the lowest Fréchet distance chosen and written to choice.json; the test set is not
    read. Bad values are one-line errors."""
    run = _gan(tmp_path, epochs=1, model_args={"width": 4})["run_dir"]
    r = run_main("gan", "choose", run, "--values", "0,1.5", "--samples", "64", "--reference", "200", "--json")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert [row["truncation"] for row in out["rows"]] == [0.0, 1.5] and out["noise_seed"] == 1000
    best = min(out["rows"], key=lambda row: row["distance"])
    assert out["chosen"] == best["truncation"] and json.loads((Path(run) / "choice.json").read_text()) == out
    r = run_main("gan", "choose", run, "--rule", "nearest")
    assert r.returncode == 2 and "--rule must be distance or targets" in r.stderr
    r = run_main("diffusion", "choose", run)
    assert r.returncode == 2 and "a gan run; choose its truncation with `smallvision gan choose`" in r.stderr, r.stderr
    r = run_main("gan", "choose", run, "--reference", "5000")
    assert r.returncode == 2 and "the training set has" in r.stderr and len(r.stderr.strip().splitlines()) == 1
