"""The quantizer plug-ins (``vq``, ``fsq``, ``lfq``, ``kl``): outputs on their grids, gradients as their
papers say, statistics and losses against direct computations, and the ``vqgan3d`` node."""

from __future__ import annotations

import math
from itertools import product

import pytest
import torch
from pydantic import ValidationError

from vqvdm_core import load_recipe
from vqvdm_core.errors import RecipeError
from vqvdm_core.registry import REGISTRY
from vqvdm_plugins.quantizers.fsq import FSQ
from vqvdm_plugins.quantizers.kl import KLPosterior
from vqvdm_plugins.quantizers.lfq import LFQ
from vqvdm_plugins.vqgan3d.tokenizer import VQGAN3D

TINY = dict(channels=8, channel_mults=(1, 2, 2, 2), num_res_blocks=0, mid_blocks=0, norm_groups=0,
            perceptual_weight=0.0, adversarial_weight=0.0, feature_matching_weight=0.0)
"""A tokenizer small enough to train a step in milliseconds."""


def latents(channels: int, n: int = 2, t: int = 2, hw: int = 4, *, scale: float = 1.0, seed: int = 0) -> torch.Tensor:
    return torch.randn(n, channels, t, hw, hw, generator=torch.Generator().manual_seed(seed)) * scale


def test_every_quantizer_is_registered_under_its_kind() -> None:
    names = {e.name for e in REGISTRY.entries("quantizer")}
    assert {"vq", "fsq", "lfq", "kl"} <= names


# -- fsq ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("level", "grid"), [(5, [-2, -1, 0, 1, 2]), (4, [-2, -1, 0, 1]), (2, [-1, 0]),
                                             (8, [-4, -3, -2, -1, 0, 1, 2, 3])])
def test_fsq_rounds_each_channel_onto_its_odd_or_even_grid(level: int, grid: list[int]) -> None:
    fsq = FSQ(levels=[level], saturation_weight=0.0)  # the paper's FSQ: no loss at all
    out = fsq(torch.linspace(-20, 20, 4001).view(1, 1, 1, 1, -1))
    steps = (out.latent * (level // 2)).round()
    assert torch.allclose(out.latent * (level // 2), steps, atol=1e-6)  # on the grid
    assert sorted(set(steps.flatten().tolist())) == grid  # every value reached, none beyond
    assert float(out.loss) == 0.0 and out.stats["codes_in_use"] == 1.0


def test_fsq_gradient_passes_straight_through_the_rounding() -> None:
    fsq = FSQ(levels=[8, 5, 5, 5])
    z = latents(4).requires_grad_()
    fsq(z).latent.sum().backward()
    direct = z.detach().clone().requires_grad_()
    half_width = torch.tensor([4.0, 2, 2, 2]).view(1, 4, 1, 1, 1)
    (fsq.bound(direct) / half_width).sum().backward()  # the same map without the rounding
    assert torch.allclose(z.grad, direct.grad, atol=1e-6) and bool((z.grad > 0).all())


def test_fsq_saturation_loss_is_zero_inside_its_limit_and_the_closed_form_beyond() -> None:
    fsq = FSQ(levels=[8], saturation_weight=0.5, saturation_limit=2.0)
    z = torch.tensor([-3.0, -2.0, -0.5, 0.0, 1.9, 2.5, 4.0]).view(1, 1, 1, 1, -1)
    out = fsq(z)
    assert math.isclose(float(out.loss), 0.5 * (1.0 + 0.25 + 4.0) / 7, rel_tol=1e-6)
    assert math.isclose(float(out.stats["saturated"]), 3 / 7, rel_tol=1e-6)
    assert float(fsq(z.clamp(-2, 2)).loss) == 0.0
    assert float(fsq.eval()(z).loss) == 0.0  # training only


def test_fsq_saturation_wall_stops_adam_running_the_encoder_output_into_the_flat_of_the_tanh() -> None:
    # A target beyond the grid's end pushes z outwards through an ever smaller tanh'(z); Adam rescales
    # that to full-size steps, and z as a product of weights (a network's layers) grows faster than each.
    # Without the wall z runs into the flat of the tanh; with it, it stays where the tanh is live.
    def final_z(weight: float) -> float:
        fsq = FSQ(levels=[5], saturation_weight=weight)
        factors = [torch.full((1, 1, 1, 1, 8), 0.3, requires_grad=True) for _ in range(3)]
        opt = torch.optim.Adam(factors, lr=0.05)
        for _ in range(300):
            z = factors[0] * factors[1] * factors[2]
            out = fsq(z)
            loss = (out.latent - 1.5).pow(2).mean() + out.loss
            opt.zero_grad()
            loss.backward()
            opt.step()
        return float(z.detach().abs().max())

    assert final_z(0.0) > 4.0  # the paper's FSQ: tanh(4) = 0.9993, past every level's middle
    assert final_z(1.0) < 2.2


def test_fsq_uses_every_code_of_random_inputs_and_its_indices_are_a_bijection() -> None:
    fsq = FSQ(levels=[8, 5, 5, 5])
    out = fsq(latents(4, n=64, t=4, hw=16, scale=2.0))  # 65,536 positions for 1,000 codes
    assert float(out.stats["codes_in_use"]) == 1.0
    assert math.isclose(fsq.bits_per_position, math.log2(1000))
    grid = torch.tensor(list(product(range(-4, 4), range(-2, 3), range(-2, 3), range(-2, 3))), dtype=torch.float32)
    points = (grid / torch.tensor([4.0, 2, 2, 2])).T.reshape(1, 4, 1, 1, -1)
    assert sorted(fsq.indices_of(points).flatten().tolist()) == list(range(1000))
    assert torch.equal(fsq.snap(points), points)  # a point of the grid stays
    assert torch.equal(fsq.snap(points + 0.1), points)  # off the grid: its nearest point


# -- lfq ---------------------------------------------------------------------------------------------


def direct_entropies(flat: torch.Tensor, scale: float, temperature: float) -> tuple[torch.Tensor, torch.Tensor]:
    """The entropy terms over the enumerated 2^K codes, straight from the definition."""
    k = flat.shape[1]
    codes = torch.tensor(list(product([-scale, scale], repeat=k)))
    p = torch.softmax(-((flat[:, None, :] - codes[None]) ** 2).sum(-1) / temperature, dim=1)
    h = lambda q: -(q * q.clamp_min(1e-30).log()).sum(-1)  # noqa: E731
    return h(p).mean(), h(p.mean(0))


def test_lfq_entropy_terms_equal_the_direct_computation_on_a_small_codebook() -> None:
    lfq = LFQ(channels=3, temperature=0.5, scale=1.0)
    flat = latents(3, n=4).permute(0, 2, 3, 4, 1).reshape(-1, 3) * 0.7
    per_sample, batch = lfq.entropies(flat)
    want_sample, want_batch = direct_entropies(flat, 1.0, 0.5)
    assert torch.allclose(per_sample, want_sample, atol=1e-5) and torch.allclose(batch, want_batch, atol=1e-5)
    # Above exact_entropy_bits the batch term is the per-channel factorisation: an upper bound.
    factored = LFQ(channels=3, temperature=0.5, exact_entropy_bits=2).entropies(flat)
    assert torch.allclose(factored[0], want_sample, atol=1e-5) and float(factored[1]) >= float(want_batch) - 1e-6


def test_lfq_codes_are_signs_with_straight_through_gradients_and_its_loss_is_the_papers() -> None:
    lfq = LFQ(channels=5, commitment_weight=0.25, entropy_weight=0.1, diversity_gamma=1.0)
    z = latents(5).requires_grad_()
    out = lfq(z)
    assert set(out.latent.detach().unique().tolist()) == {-1.0, 1.0}
    assert torch.equal(lfq.codes()[out.indices.flatten()],
                       out.latent.detach().permute(0, 2, 3, 4, 1).reshape(-1, 5))  # index <-> code
    out.latent.sum().backward()
    assert torch.equal(z.grad, torch.ones_like(z))
    flat = z.detach().permute(0, 2, 3, 4, 1).reshape(-1, 5)
    commitment = ((z.detach() - torch.sign(z.detach())) ** 2).mean()
    per_sample, batch = direct_entropies(flat, 1.0, lfq.config.temperature)
    assert torch.allclose(out.loss, 0.25 * commitment + 0.1 * (per_sample - batch), atol=1e-5)
    assert lfq.bits_per_position == 5


# -- kl ----------------------------------------------------------------------------------------------


def test_kl_term_is_the_closed_form_and_encoding_gives_the_posterior_mean() -> None:
    kl = KLPosterior(channels=2, kl_weight=0.5)
    z = latents(4, scale=0.8)
    mean, logvar = z[:, :2], z[:, 2:]
    posterior = torch.distributions.Normal(mean, torch.exp(0.5 * logvar))
    closed = torch.distributions.kl_divergence(posterior, torch.distributions.Normal(0.0, 1.0)).flatten(1).sum(1).mean()
    kl.eval()
    out = kl(z)
    assert torch.equal(out.latent, mean) and torch.allclose(out.stats["kl"], closed, atol=1e-5)
    assert torch.allclose(out.loss, 0.5 * closed, atol=1e-5) and kl.bits_per_position is None
    kl.train()
    draws = torch.stack([kl(z).latent for _ in range(400)])
    assert torch.allclose(draws.mean(0), mean, atol=0.35) and not torch.equal(draws[0], draws[1])
    assert torch.allclose(draws.std(0).mean(), torch.exp(0.5 * logvar).mean(), rtol=0.1)


# -- the vqgan3d node --------------------------------------------------------------------------------


@pytest.mark.parametrize(("node", "channels"), [({"name": "fsq", "levels": [8, 5, 5, 5]}, 4),
                                                ({"name": "lfq"}, 10), ({"name": "kl"}, 4),
                                                ({"name": "vq", "num_codes": 64}, 4)])
def test_vqgan3d_trains_and_encodes_with_each_quantizer(node: dict, channels: int) -> None:
    torch.manual_seed(0)
    tok = VQGAN3D(**TINY, latent_channels=channels, quantizer=node)
    video = torch.rand(2, 3, 4, 16, 16) * 2 - 1
    step = tok.training_step({"video": video}, step=0)
    step.losses["generator"].backward()
    assert all(p.grad is not None for p in tok.encoder.parameters())
    assert math.isfinite(step.logs["vq"]) and "l2" in step.logs
    tok.eval()
    with torch.no_grad():
        latent = tok.encode(video)
        assert latent.shape == (2, channels, 1, 2, 2)
        assert torch.equal(tok.encode(video), latent)  # deterministic when encoding
        assert tok.decode(latent).shape == video.shape
        assert torch.equal(tok.decode(latent, quantize=True), tok.decode(tok.quantizer.snap(latent)))


def test_the_default_vqgan3d_quantizer_is_vq_with_the_tokenizers_own_fields() -> None:
    torch.manual_seed(0)
    flat = VQGAN3D(**TINY, num_codes=32, codebook_ema=True)
    torch.manual_seed(0)
    node = VQGAN3D(**TINY, quantizer={"name": "vq", "num_codes": 32, "ema": True})
    assert type(flat.quantizer) is type(node.quantizer) and flat.quantizer.num_codes == 32
    assert flat.state_dict().keys() == node.state_dict().keys()
    assert all(torch.equal(v, node.state_dict()[k]) for k, v in flat.state_dict().items())
    assert VQGAN3D.Config().quantizer is None  # no node: recipes and hashes as before quantizers were plug-ins


@pytest.mark.parametrize(("node", "extra", "says"), [
    ({"name": "fsq", "levels": [1, 5, 5, 5]}, {}, "every level must be at least 2"),
    ({"name": "fsq", "levels": [8, 5, 5]}, {}, "makes 3-channel latents but latent_channels is 4"),
    ({"name": "fsq", "lvls": [8]}, {}, "unknown field 'lvls'; did you mean 'levels'?"),
    ({"name": "fsqq"}, {}, "unknown quantizer 'fsqq'"),
    ({"name": "lfq"}, {"num_codes": 1024}, "num_codes is a setting of the built-in vq quantizer"),
])
def test_a_bad_quantizer_node_is_one_recipe_error_at_its_path(tmp_path, node: dict, extra: dict, says: str) -> None:
    import yaml

    recipe = yaml.safe_load(open("recipes/quickstart.yaml"))
    vq_fields = ("num_codes", "codebook_ema", "codebook_init_from_data", "codebook_l2_normalize", "dead_code_threshold")
    recipe["tokenizer"] = {k: v for k, v in recipe["tokenizer"].items() if k not in vq_fields}
    recipe["tokenizer"].update(extra, quantizer=node)
    with pytest.raises(RecipeError) as refused:
        load_recipe(recipe)
    assert "tokenizer" in str(refused.value) and says in str(refused.value)
    assert "Value error" not in str(refused.value)


def test_the_quantizer_node_keeps_only_the_fields_it_sets() -> None:
    config = VQGAN3D.Config(quantizer={"name": "lfq", "entropy_weight": 0.1, "temperature": 0.05})
    assert config.quantizer == {"name": "lfq", "temperature": 0.05}  # entropy_weight 0.1 is the default
    with pytest.raises(ValidationError):
        VQGAN3D.Config(quantizer={"levels": [8]})  # no name


@pytest.mark.parametrize("node", [{"name": "fsq", "levels": [8, 8, 8, 8]}, {"name": "lfq"}, {"name": "kl"}])
def test_a_run_trains_caches_latents_samples_and_exports_with_each_quantizer(tmp_path, standins, node: dict) -> None:
    """The pipeline around the tokenizer does not care which latent it holds: the latents stage encodes
    (deterministically: the posterior mean for kl), the denoiser trains on them with their measured
    scale, and an exported pipeline decodes as the run does."""
    import sys
    from pathlib import Path

    from rich.console import Console

    from vqvdm_core.pipeline import run_recipe
    from vqvdm_core.system import LatentVideoDiffusion

    sys.path.insert(0, str(Path(__file__).parents[1]))
    from standins import tiny_recipe

    tokenizer = {"name": "vqgan3d", **TINY, "temporal_factor": 2, "spatial_factor": 4, "channel_mults": (1, 2, 2),
                 "latent_channels": 4, "quantizer": node}
    recipe = load_recipe(tiny_recipe(output_dir=str(tmp_path / "runs"), tokenizer=tokenizer,
                                     evaluate={"metrics": [{"name": "mean_brightness"}], "num_samples": 2,
                                               "steps": 2, "batch_size": 2, "guidance_scales": [1.0]}))
    ctx = run_recipe(recipe, console=Console(file=open("/dev/null", "w")))
    run = ctx.run.path
    info = ctx.run.record("latents").info
    assert info["scale"] > 0 and math.isfinite(info["scale"])
    logged = (run / "tokenizer" / "metrics.jsonl").read_text()
    assert '"vq"' in logged and ('"kl"' in logged if node["name"] == "kl" else '"codes_in_use"' in logged)
    from vqvdm_core.engine.checkpoint import load_weights

    pipeline = LatentVideoDiffusion.from_pretrained(exported(run, tmp_path / "pipeline"))
    assert pipeline.tokenizer.config.quantizer == recipe.tokenizer.config.quantizer
    trained = recipe.tokenizer.build("tokenizer")
    trained.load_state_dict(load_weights(run / "tokenizer" / "tokenizer.safetensors"))
    video = torch.rand(2, 3, 4, 8, 8) * 2 - 1
    with torch.no_grad():
        latent = pipeline.tokenizer.eval().encode(video)
        assert latent.shape == (2, 4, 2, 2, 2)
        assert torch.equal(latent, trained.eval().encode(video))  # the exported tokenizer is the run's
    assert (run / "sample" / "samples.safetensors").is_file() and ctx.run.record("evaluate").status == "done"


def exported(run, out):
    from typer.testing import CliRunner

    from vqvdm_core.cli import app

    result = CliRunner().invoke(app, ["export", str(run), str(out)])
    assert result.exit_code == 0, result.output
    return out
