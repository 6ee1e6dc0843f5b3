"""Sharded training steps (``train.<stage>.shards``): one process computes the shards one after
another, and adds their results in shard order, exactly as several processes would."""

from __future__ import annotations

from collections import namedtuple

import pytest
import torch
from engine_toys import ToyPairs, make_gan, make_trainer, settings

from vqvdm_core.engine.batches import LoaderError, split_batch
from vqvdm_core.recipe import TrainSettings
from vqvdm_core.runtime import distributed


def test_split_batch_cuts_tensors_and_lists_and_repeats_the_rest():
    Pair = namedtuple("Pair", "a b")
    batch = {"x": torch.arange(6).view(6, 1), "names": list("abcdef"), "scale": 2.0,
             "zero_dim": torch.tensor(3.0), "pair": Pair(torch.arange(6), [0, 1, 2, 3, 4, 5])}
    pieces = split_batch(batch, 3)
    assert [p["x"].flatten().tolist() for p in pieces] == [[0, 1], [2, 3], [4, 5]]
    assert [p["names"] for p in pieces] == [["a", "b"], ["c", "d"], ["e", "f"]]
    assert [p["scale"] for p in pieces] == [2.0, 2.0, 2.0]
    assert all(float(p["zero_dim"]) == 3.0 for p in pieces)
    assert isinstance(pieces[2]["pair"], Pair) and pieces[2]["pair"].a.tolist() == [4, 5]
    assert pieces[1]["pair"].b == [2, 3]
    with pytest.raises(LoaderError, match="a batch of 6 cannot be cut into 4 equal shards"):
        split_batch(batch, 4)


def test_combine_adds_the_shards_in_shard_order():
    step = distributed.ShardedStep(3)
    # float32: (1 - 1) + 1e-8 == 1e-8, while 1 + (-1 + 1e-8) == 0: the order shows in the bits.
    parts = [torch.tensor([1.0]), torch.tensor([-1.0]), torch.tensor([1e-8])]
    assert float(step.combine(parts)) == float((parts[0] + parts[1]) + parts[2]) == pytest.approx(1e-8)
    assert float(parts[0] + (parts[1] + parts[2])) == 0.0  # another order gives other bits
    assert parts[0].item() == 1.0  # the inputs are left alone
    with pytest.raises(ValueError, match="got 2 parts; this process computes 3 shards"):
        step.combine(parts[:2])


def test_shards_see_their_place_draw_the_global_batch_and_run_end_of_step_work_once():
    step = distributed.ShardedStep(2)
    ran: list[str] = []
    seen = []
    for local in range(2):
        torch.manual_seed(3)
        with step.shard(local) as index:
            seen.append((index, distributed.batch_share(), distributed.draw_for_global_batch(torch.randn, 2)))
            distributed.at_step_end("codebook", lambda: ran.append("codebook"))
            with pytest.raises(RuntimeError, match="batch_sum inside a sharded training step"):
                distributed.batch_sum(torch.ones(1))
    torch.manual_seed(3)
    whole = torch.randn(4)
    assert [(i, s) for i, s, _ in seen] == [(0, (0, 2)), (1, (1, 2))]
    torch.testing.assert_close(torch.cat([d for _, _, d in seen]), whole, atol=0, rtol=0)
    assert ran == []
    step.finish()
    assert ran == ["codebook"]
    step.finish()  # callbacks are per step: nothing left
    assert ran == ["codebook"] and distributed.batch_share() == (0, 1) and not distributed.is_sharded()
    with pytest.raises(RuntimeError, match="at_step_end outside a sharded training step"):
        distributed.at_step_end("x", lambda: None)


def test_shards_must_divide_the_batch():
    with pytest.raises(ValueError, match="batch_size 6 must be divisible by shards 4"):
        TrainSettings(batch_size=6, shards=4)


@pytest.mark.parametrize("shards", [2, 4])
def test_a_sharded_step_trains_the_model_one_batch_trains(tmp_path, shards):
    """Without random draws in the model, shards change only the rounding: the same weights to 1e-6
    after accumulation, clipping and EMA, for a GAN's two optimizer groups."""
    train = dict(steps=4, batch_size=4, grad_accum=2, grad_clip=0.5, ema_decay=0.8)
    whole = make_trainer(make_gan(), settings(**train), tmp_path / "whole")
    whole.fit(ToyPairs(12))
    sharded = make_trainer(make_gan(), settings(**train, shards=shards), tmp_path / "sharded")
    sharded.fit(ToyPairs(12))
    for name, value in whole.model.state_dict().items():
        torch.testing.assert_close(sharded.model.state_dict()[name], value, atol=1e-6, rtol=0, msg=name)
    for a, b in zip(whole.history, sharded.history, strict=True):
        assert a["loss/generator"] == pytest.approx(b["loss/generator"], abs=1e-6)
        assert a["g_adv"] == pytest.approx(b["g_adv"], abs=1e-6)
    assert sharded.model.calls == whole.model.calls * shards


def test_a_group_no_shard_reaches_keeps_no_gradient(tmp_path):
    """Before the discriminator's start its loss reaches no parameter on any shard: no update, no
    optimizer state, as without shards."""
    trainer = make_trainer(make_gan(discriminator_start=10), settings(steps=2, shards=2), tmp_path)
    before = {k: v.clone() for k, v in trainer.model.discriminator.state_dict().items()}
    trainer.fit(ToyPairs(12))
    for k, v in trainer.model.discriminator.state_dict().items():
        assert torch.equal(v, before[k]), k
    assert not trainer.optimizers["discriminator"].state


def test_a_sharded_run_resumed_from_its_checkpoint_ends_where_an_uninterrupted_one_does(tmp_path):
    """Each sharded step draws from a state derived from (seed, step, micro-batch): a resumed run
    needs nothing of the interrupted one's generators to continue bit for bit."""
    train = dict(batch_size=4, grad_accum=2, shards=2, ckpt_every=2)
    make_trainer(make_gan(noise=True), settings(steps=2, **train), tmp_path / "run").fit(ToyPairs(12))
    torch.manual_seed(123)  # a different global stream in the resuming process: must not matter
    resumed = make_trainer(make_gan(noise=True), settings(steps=4, **train), tmp_path / "run")
    resumed.fit(ToyPairs(12))
    straight = make_trainer(make_gan(noise=True), settings(steps=4, **train), tmp_path / "straight")
    straight.fit(ToyPairs(12))
    for name, value in straight.model.state_dict().items():
        assert torch.equal(resumed.model.state_dict()[name], value), name
