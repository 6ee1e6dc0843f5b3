"""Data iteration: a pure function of (seed, epoch, position), sharded by rank, resumable."""

from __future__ import annotations

import itertools

import pytest
import torch
from engine_toys import ToyPairs
from torch.utils.data import default_collate

from vqvdm_core.engine.batches import InfiniteLoader, LoaderError


def _loader(**kwargs):
    kwargs.setdefault("batch_size", 4)
    kwargs.setdefault("seed", 0)
    dataset = kwargs.pop("dataset", None) or ToyPairs(12)
    return InfiniteLoader(dataset, collate_fn=default_collate, **kwargs)


def _take(loader, n):
    batches = list(itertools.islice(loader, n))
    loader.close()
    return batches


def _same(a, b):
    return all(torch.equal(x["x"], y["x"]) and torch.equal(x["y"], y["y"]) for x, y in zip(a, b, strict=True))


def test_batches_are_a_pure_function_of_seed_and_epoch():
    first, second = _take(_loader(), 6), _take(_loader(), 6)
    assert _same(first, second)
    epoch0, epoch1 = first[:3], first[3:]  # 12 clips / 4 = 3 batches per epoch
    assert not _same(epoch0, epoch1)
    assert not _same(first, _take(_loader(seed=1), 6))
    # every clip once per epoch (the augmentation noise is below 0.1)
    seen = torch.cat([b["x"] for b in epoch0])
    base = ToyPairs(12, augment=False).x
    assert torch.cdist(seen, base).min(dim=1).indices.sort().values.tolist() == list(range(12))


def test_ranks_split_each_global_batch():
    whole = _take(_loader(batch_size=4), 5)
    shards = [_take(_loader(batch_size=4, rank=r, world_size=2), 5) for r in range(2)]
    for j, batch in enumerate(whole):
        joined = torch.cat([shards[0][j]["x"], shards[1][j]["x"]])
        assert torch.equal(joined, batch["x"])  # augmentation included


def test_a_resumed_loader_continues_with_the_next_batch():
    reference = _take(_loader(), 7)
    loader = _loader()
    _take(loader, 4)
    state = loader.state_dict()
    assert state == {"epoch": 1, "batch": 1}
    resumed = _loader()
    resumed.load_state_dict(state)
    assert _same(_take(resumed, 3), reference[4:])


def test_worker_processes_give_the_same_batches():
    assert _same(_take(_loader(num_workers=2), 4), _take(_loader(), 4))


def test_reading_data_does_not_consume_the_global_generators():
    torch.manual_seed(5)
    _take(_loader(), 4)
    after = torch.rand(3)
    torch.manual_seed(5)
    assert torch.equal(after, torch.rand(3))


def test_the_global_batch_must_split_evenly_over_ranks():
    with pytest.raises(LoaderError, match="batch_size 4 is the global batch.*3"):
        _loader(batch_size=4, world_size=3)


def test_training_with_worker_processes_reaches_the_same_weights(tmp_path):
    """Workers change where clips are read, not what they are, nor the model's own random draws."""
    from engine_toys import make_gan, make_trainer, settings

    weights = []
    for workers in (0, 2):
        model = make_gan(noise=True)
        make_trainer(model, settings(steps=6, num_workers=workers), tmp_path / str(workers)).fit(ToyPairs(12))
        weights.append(model.state_dict())
    for name, value in weights[0].items():
        assert torch.equal(weights[1][name], value), name
