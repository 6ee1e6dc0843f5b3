"""Tests of the motion conditioner and the motion_clips data set, runnable against an installed copy."""

from __future__ import annotations

import pytest
import torch

from vqvdm_core.registry import conformance_problem
from vqvdm_example_plugin import MotionClips, MotionConditioner


def test_both_conform_to_their_interfaces():
    assert conformance_problem("conditioner", MotionConditioner) is None
    assert conformance_problem("dataset", MotionClips) is None
    assert MotionConditioner.field == "motion"


def test_the_data_set_provides_the_motion_of_each_clip_and_moves_the_square_that_fast():
    ds = MotionClips(num_clips=4, frames=4, size=8, levels=2, max_speed=2.0)
    items = [ds[i] for i in range(4)]
    assert [item["motion"] for item in items] == [0.0, 1.0, 0.0, 1.0]

    def column(video: torch.Tensor, t: int) -> int:
        return int(video[0, t, 3].argmax())

    still, moving = items[0]["video"], items[1]["video"]
    assert {column(still, t) for t in range(4)} == {column(still, 0)}
    assert [(column(moving, t + 1) - column(moving, t)) % 8 for t in range(3)] == [2, 2, 2]


def test_the_embedding_tells_motions_apart_and_null_default_follow_the_config():
    cond = MotionConditioner(emb_dim=16)
    emb = cond(torch.tensor([0.0, 0.5, 1.0]))
    assert emb.shape == (3, 16) and not torch.allclose(emb[0], emb[2])
    assert cond.default(2, device="cpu") is None and not cond.guided
    assert cond.null(2, device="cpu").tolist() == [0.0, 0.0]
    with_default = MotionConditioner(emb_dim=16, default_motion=0.3, guided=True)
    assert with_default.default(2, device="cpu").tolist() == pytest.approx([0.3, 0.3]) and with_default.guided
