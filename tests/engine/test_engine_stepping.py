"""One optimizer step: several optimizers, their order and isolation, accumulation, EMA, AMP, compile."""

from __future__ import annotations

import copy

import pytest
import torch
from engine_toys import ToyGAN, ToyPairs, make_gan, make_trainer, settings

from vqvdm_core.engine.batches import LoaderError
from vqvdm_core.engine.ema import EMA
from vqvdm_core.engine.optim import OptimizerGroupError
from vqvdm_core.errors import UserError
from vqvdm_core.runtime.devices import DeviceError


def _params(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.named_parameters()}


def test_each_optimizer_steps_on_its_own_loss_only(tmp_path):
    """One step of a toy GAN equals an Adam step of each group on the gradient of its own loss."""
    data = ToyPairs(8, augment=False)
    model = make_gan()
    reference = copy.deepcopy(model)
    lr = 1e-2
    make_trainer(model, settings(steps=1, batch_size=8), tmp_path).fit(data)

    # Independent reference: both losses on the whole data set (the batch), each group's
    # gradient from its own loss, Adam's first step p - lr * g / (|g| + eps).
    full = {"x": data.x, "y": data.y}
    losses = reference.losses(full)
    expected = {}
    for group, loss in losses.items():
        params = dict(getattr(reference, group).named_parameters())
        grads = torch.autograd.grad(loss, list(params.values()), retain_graph=True)
        for (name, p), g in zip(params.items(), grads):
            expected[f"{group}.{name}"] = p.detach() - lr * g / (g.abs() + 1e-8)
    got = _params(model)
    for name, value in expected.items():
        torch.testing.assert_close(got[name], value, atol=1e-6, rtol=0, msg=name)

    # Training the discriminator on the generator's loss as well would move it differently.
    mixed = torch.autograd.grad(losses["generator"] + losses["discriminator"],
                                list(reference.discriminator.parameters()))
    wrong = reference.discriminator[0].weight.detach() - lr * mixed[0] / (mixed[0].abs() + 1e-8)
    assert not torch.allclose(got["discriminator.0.weight"], wrong, atol=1e-6)


def test_groups_step_in_loss_order_and_do_not_touch_each_other(tmp_path):
    """Backward, then step, group by group; with accumulation the steps follow the last micro-batch."""
    model = make_gan()
    trainer = make_trainer(model, settings(steps=1, batch_size=4, grad_accum=2), tmp_path)
    events: list[str] = []
    snapshots: dict[str, dict[str, torch.Tensor]] = {}
    before = _params(model)
    model.generator.weight.register_hook(lambda g: events.append("grad:generator"))
    model.discriminator[0].weight.register_hook(lambda g: events.append("grad:discriminator"))
    for group, opt in trainer.optimizers.items():
        opt.register_step_post_hook(
            lambda opt, args, kwargs, group=group: (events.append(f"step:{group}"),
                                                    snapshots.__setitem__(group, _params(model)))
        )
    trainer.fit(ToyPairs(8))

    assert events == ["grad:generator", "grad:discriminator",  # first micro-batch: no step
                      "grad:generator", "step:generator", "grad:discriminator", "step:discriminator"]
    after_g, after_d, final = snapshots["generator"], snapshots["discriminator"], _params(model)
    for name in before:
        if name.startswith("discriminator."):
            assert torch.equal(after_g[name], before[name]), f"generator step changed {name}"
            assert not torch.equal(final[name], before[name])
        else:
            assert not torch.equal(after_g[name], before[name])
            assert torch.equal(after_d[name], after_g[name]), f"discriminator step changed {name}"


def test_a_group_whose_loss_has_no_graph_is_not_stepped_until_it_has_one(tmp_path):
    """A dormant discriminator (graph-free zero loss) keeps its weights even under weight decay and
    has no optimizer state; from its switch-on step its Adam moments start fresh (step count 1)."""
    model = make_gan(discriminator_start=2)
    before = _params(model)
    trainer = make_trainer(model, settings(steps=2, grad_clip=1.0, optimizer={"name": "adamw", "lr": 1e-2,
                                                                              "weight_decay": 0.1}), tmp_path)
    result = trainer.fit(ToyPairs(8))
    assert [r["grad_norm/discriminator"] for r in result.history if r["tag"] == "train"] == [0.0, 0.0]
    after = _params(model)
    assert all(torch.equal(after[k], v) for k, v in before.items() if k.startswith("discriminator."))
    assert not any(torch.equal(after[k], v) for k, v in before.items() if k.startswith("generator."))
    assert not trainer.optimizers["discriminator"].state

    model = make_gan(discriminator_start=2)
    trainer = make_trainer(model, settings(steps=3, optimizer={"name": "adamw", "lr": 1e-2}), tmp_path / "on")
    trainer.fit(ToyPairs(8))
    steps = {float(state["step"]) for state in trainer.optimizers["discriminator"].state.values()}
    assert steps == {1.0}
    assert {float(state["step"]) for state in trainer.optimizers["generator"].state.values()} == {3.0}


@pytest.mark.parametrize("clip", [None, 0.05])
def test_grad_accumulation_equals_the_full_batch(tmp_path, clip):
    """Three steps of 2 micro-batches of 4 equal three steps of one batch of 8, for both groups."""
    runs = {}
    for accum, batch in ((1, 8), (2, 4)):
        model = make_gan()
        s = settings(steps=3, batch_size=batch, grad_accum=accum, grad_clip=clip, ema_decay=0.5)
        trainer = make_trainer(model, s, tmp_path / f"accum{accum}")
        trainer.fit(ToyPairs(16))
        runs[accum] = (_params(model), _params(trainer.ema_model()))
    initial = _params(make_gan())
    for name, value in runs[1][0].items():
        assert not torch.allclose(value, initial[name])
        torch.testing.assert_close(runs[2][0][name], value, atol=1e-6, rtol=0, msg=name)
        torch.testing.assert_close(runs[2][1][name], runs[1][1][name], atol=1e-6, rtol=0, msg=name)


def test_ema_update_formula():
    model = torch.nn.Linear(3, 2)
    ema = EMA(model, decay=0.9)
    start = _params(model)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p))
    moved = _params(model)
    ema.update(model)
    for name in start:
        torch.testing.assert_close(ema.shadow[name], 0.9 * start[name] + 0.1 * moved[name])
    with ema.swapped_in(model):
        torch.testing.assert_close(model.weight, 0.9 * start["weight"] + 0.1 * moved["weight"])
    assert torch.equal(model.weight, moved["weight"])  # restored on exit


def test_trainer_ema_follows_the_trained_weights(tmp_path):
    model = make_gan()
    start = _params(model)
    trainer = make_trainer(model, settings(steps=1, ema_decay=0.8), tmp_path)
    trainer.fit(ToyPairs(8))
    ema, trained = _params(trainer.ema_model()), _params(model)
    for name in start:
        torch.testing.assert_close(ema[name], 0.8 * start[name] + 0.2 * trained[name])
    assert trainer.ema_model() is not model
    off = make_trainer(make_gan(), settings(steps=1), tmp_path / "off")
    assert off.ema_model() is off.model


def test_bf16_autocast_trains_on_cpu(tmp_path):
    model = make_gan()
    start = _params(model)
    result = make_trainer(model, settings(steps=2, precision="bf16"), tmp_path).fit(ToyPairs(8))
    assert model.seen_dtype == torch.bfloat16  # the forward ran under bf16 autocast
    assert all(p.dtype == torch.float32 for p in model.parameters())  # master weights stay fp32
    assert all(not torch.equal(p, start[n]) for n, p in model.named_parameters())
    assert torch.isfinite(torch.tensor(result.final["loss/generator"]))


def test_fp16_on_cpu_is_refused_with_a_clear_message(tmp_path):
    with pytest.raises(DeviceError, match="fp16 needs a CUDA device.*bf16"):
        make_trainer(make_gan(), settings(precision="fp16"), tmp_path)


def test_compiled_step_matches_eager(tmp_path):
    graphs: list[object] = []

    def recording_backend(graph_module, example_inputs):
        """A torch.compile backend that runs the captured graph as is and counts it."""
        graphs.append(graph_module)
        return graph_module.forward

    results = []
    for compiled in (False, True):
        model = make_gan()
        make_trainer(model, settings(steps=2, compile=compiled), tmp_path / str(compiled),
                     compile_backend=recording_backend).fit(ToyPairs(8))
        results.append(_params(model))
        if not compiled:
            assert not graphs  # the eager run compiled nothing
    assert graphs  # the compiled run went through torch.compile
    for name in results[0]:
        torch.testing.assert_close(results[1][name], results[0][name], atol=1e-6, rtol=0)


def test_warmup_and_per_group_learning_rates(tmp_path):
    s = settings(steps=3, optimizer={"name": "adamw", "lr": 0.01, "warmup_steps": 2},
                 param_groups={"discriminator": {"lr": 0.001}})
    result = make_trainer(make_gan(), s, tmp_path).fit(ToyPairs(8))
    train = [r for r in result.history if r["tag"] == "train"]
    assert [r["lr/generator"] for r in train] == pytest.approx([0.005, 0.01, 0.01])
    assert [r["lr/discriminator"] for r in train] == pytest.approx([0.0005, 0.001, 0.001])


def test_cosine_decay_follows_warm_up_down_to_min_lr_ratio_at_the_last_step(tmp_path):
    s = settings(steps=6, optimizer={"name": "adamw", "lr": 0.01, "warmup_steps": 2, "decay": "cosine",
                                     "min_lr_ratio": 0.1})
    result = make_trainer(make_gan(), s, tmp_path).fit(ToyPairs(8))
    lrs = [r["lr/generator"] for r in result.history if r["tag"] == "train"]
    # Warm-up 0.5, 1; then 0.1 + 0.9 * (1 + cos(pi * k / 3)) / 2 for k = 0..3 over the last 4 steps.
    assert lrs == pytest.approx([0.005, 0.01, 0.01, 0.00775, 0.00325, 0.001])


def test_linear_decay_over_the_last_decay_steps_keeps_lr_until_then(tmp_path):
    s = settings(steps=7, optimizer={"name": "adamw", "lr": 0.01, "warmup_steps": 1, "decay": "linear",
                                     "decay_steps": 3})
    result = make_trainer(make_gan(), s, tmp_path).fit(ToyPairs(8))
    lrs = [r["lr/generator"] for r in result.history if r["tag"] == "train"]
    # Stable at lr through step 3, then a straight line to 0 at the last step (6): 2/3, 1/3, 0.
    assert lrs == pytest.approx([0.01, 0.01, 0.01, 0.01, 0.01 * 2 / 3, 0.01 / 3, 0.0])


def test_unknown_param_group_names_the_model_groups(tmp_path):
    s = settings(param_groups={"critic": {"lr": 0.1}})
    with pytest.raises(OptimizerGroupError, match="'critic'.*'generator', 'discriminator'"):
        make_trainer(make_gan(), s, tmp_path)


def test_a_parameter_in_two_groups_is_refused(tmp_path):
    class Shared(ToyGAN):
        def optimizer_groups(self):
            return {"a": list(self.generator.parameters()), "b": [self.generator.weight]}

    torch.manual_seed(0)
    with pytest.raises(OptimizerGroupError, match="both optimizer groups 'a' and 'b'"):
        make_trainer(Shared(), settings(), tmp_path)


def test_a_module_that_is_not_trainable_is_refused(tmp_path):
    with pytest.raises(UserError, match="Linear cannot be trained"):
        make_trainer(torch.nn.Linear(2, 2), settings(), tmp_path)


def test_too_small_dataset_is_a_user_error(tmp_path):
    with pytest.raises(LoaderError, match="3 clip.*batch of 4"):
        make_trainer(make_gan(), settings(batch_size=4), tmp_path).fit(ToyPairs(3))

