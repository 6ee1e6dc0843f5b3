"""The ``quantizer`` node of ``vqgan3d``: validated against the registered quantizer at recipe load,
and built with its channels wired from the tokenizer's ``latent_channels``.

A config without a node quantizes with the paper's ``vq``, configured by the tokenizer's own fields
(``num_codes``, ``beta``, ``codebook_*``) as before quantizers were plug-ins: those recipes, their
hashes and their weights are unchanged. A node keeps only the fields it sets (defaults are left out,
so that a quantizer which gains a defaulted field does not change the hash of runs made with it).
"""

from __future__ import annotations

import difflib
from typing import Any

import torch
from pydantic import ValidationError

from vqvdm_core.errors import ComponentError
from vqvdm_core.interfaces import Quantizer

__all__ = ["VQ_FIELDS", "WIRED_CHANNELS", "build_quantizer", "quantizer_node"]

VQ_FIELDS: dict[str, str] = {
    "num_codes": "num_codes",
    "beta": "beta",
    "codebook_ema": "ema",
    "codebook_ema_decay": "ema_decay",
    "codebook_init_from_data": "init_from_data",
    "dead_code_threshold": "dead_code_threshold",
    "codebook_l2_normalize": "l2_normalize",
}
"""``vqgan3d`` field -> the ``vq`` quantizer's field it sets when the config has no quantizer node."""

WIRED_CHANNELS = ("channels", "code_dim")
"""Quantizer fields filled with the tokenizer's ``latent_channels`` when the node leaves them unset."""


def quantizer_node(node: Any) -> dict[str, Any]:
    """``{name, **fields set}`` of a node (``"fsq"`` or ``{name: fsq, levels: [...]}``), its fields
    validated by the registered quantizer's Config; ``ValueError`` naming what is wrong."""
    from vqvdm_core.registry import REGISTRY

    if isinstance(node, str):
        node = {"name": node}
    if not isinstance(node, dict) or not isinstance(node.get("name"), str):
        raise ValueError("a quantizer node needs a name, e.g. {name: fsq, levels: [8, 5, 5, 5]}")
    options = {k: v for k, v in node.items() if k != "name"}
    try:
        cls = REGISTRY.load("quantizer", node["name"])
    except ComponentError as exc:
        raise ValueError(str(exc)) from None
    try:
        config = cls.Config.model_validate(options)
    except ValidationError as exc:
        raise ValueError(f"quantizer '{node['name']}': "
                         + "; ".join(_problem(e, list(cls.Config.model_fields)) for e in exc.errors())) from None
    return {"name": node["name"], **config.model_dump(mode="json", exclude_defaults=True)}


def _problem(error: Any, fields: list[str]) -> str:
    """One pydantic error of a quantizer node as ``field: message``."""
    where = ".".join(str(p) for p in error["loc"]) or "node"
    if error["type"] == "extra_forbidden":
        near = difflib.get_close_matches(str(error["loc"][-1]), fields, n=1, cutoff=0.6)
        return (f"unknown field '{where}'" + (f"; did you mean '{near[0]}'?" if near else "")
                + f" (fields: {', '.join(fields)})")
    if error["type"] == "value_error" and "error" in error.get("ctx", {}):
        return f"{where}: {error['ctx']['error']}"
    return f"{where}: {error['msg']}"


def build_quantizer(config: Any, *, device: str | None = None) -> Quantizer:
    """The quantizer of a ``vqgan3d`` config (see the module docstring). ``device="meta"`` builds a
    probe without storage (and without drawing from the random generator), e.g. to read its channels."""
    from vqvdm_core.registry import REGISTRY

    node = config.quantizer
    if node is None:
        name = "vq"
        fields: dict[str, Any] = {vq: getattr(config, flat) for flat, vq in VQ_FIELDS.items()}
    else:
        name, fields = node["name"], {k: v for k, v in node.items() if k != "name"}
    cls = REGISTRY.load("quantizer", name)
    wired = {f: config.latent_channels for f in WIRED_CHANNELS
             if f in cls.Config.model_fields and fields.get(f) is None}
    if device is None:
        return cls(**fields, **wired)
    with torch.random.fork_rng(devices=[]), torch.device(device):
        return cls(**fields, **wired)
