"""The coordinates in which ``euler`` and ``heun`` step the probability-flow ODE of any Gaussian path.

On a path ``x = alpha x0 + sigma eps`` the ODE has two linear coordinate systems in which its right
side is the model's estimate alone (so that one Euler step with the estimate held fixed lands
exactly on ``alpha' x0 + sigma' eps``, which is DDIM at eta 0):

* ``sigma``: ``x~ = x / alpha`` against ``s = sigma / alpha``, where ``dx~/ds = eps`` (Karras et al.
  2022, Eq. 4 with their scaling; on EDM's path ``x~ = x`` and ``s = sigma``): needs ``alpha > 0``;
* ``flow``: ``y = x / (alpha + sigma)`` against ``tau = sigma / (alpha + sigma)``, where
  ``y = (1 - tau) x0 + tau eps`` is the linear interpolant and ``dy/dtau = eps - x0`` (rectified
  flow; on its path ``y = x`` and ``tau = t``): defined from pure noise (``tau = 1``) to the clean end.

A second-order step (``heun``) is not the same in both: the trapezoidal rule is exact for slopes
linear in its time variable, which ``s`` and ``tau`` are not at once. ``auto`` takes the chain's
own :attr:`~vqvdm_core.interfaces.sampler.SamplingChain.space` (``sigma`` for ddpm and edm, ``flow``
for flow), which makes ``heun`` Karras et al.'s Algorithm 1 on EDM and diffusers'
``FlowMatchHeunDiscreteScheduler`` on rectified flow.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field
from torch import Tensor

from vqvdm_core.errors import UserError
from vqvdm_core.interfaces import Sampler
from vqvdm_core.interfaces.sampler import SamplerConfig, SamplingChain

__all__ = ["ODE_SPACE_HELP", "OdeSampler", "OdeSpace", "coordinates", "ode_space", "slope"]

OdeSpace = Literal["auto", "sigma", "flow"]
ODE_SPACE_HELP = ("the ODE coordinates it steps in: sigma (x / alpha against sigma / alpha: Karras et al.), flow "
                  "(x / (alpha + sigma) against sigma / (alpha + sigma): the linear interpolant) or auto (the "
                  "schedule's own: sigma for ddpm and edm, flow for flow)")


def ode_space(configured: str, chain: SamplingChain) -> str:
    """The space a sampler configured with ``configured`` steps ``chain`` in; a clear error where
    ``sigma`` coordinates do not exist (a level with ``alpha = 0``)."""
    space = chain.space if configured == "auto" else configured
    if space == "sigma" and any(chain.alpha(i) == 0.0 for i in range(len(chain))):
        raise UserError("the chain starts in pure noise (alpha = 0, e.g. flow at t = 1), where the sigma "
                        "coordinates x / alpha do not exist: use space: flow (or auto)")
    return space


def coordinates(chain: SamplingChain, i: int, space: str) -> tuple[float, float]:
    """``(scale, time)`` of level ``i`` in ``space``: the state there is ``scale * y`` with ``y`` the
    ODE's variable at ``time`` (the clean end: ``(1, 0)`` in both spaces)."""
    alpha, sigma = chain.alpha(i), chain.sigma(i)
    if space == "sigma":
        return alpha, sigma / alpha
    total = alpha + sigma
    return total, sigma / total


def slope(x0: Tensor, eps: Tensor, space: str) -> Tensor:
    """The ODE's right side from the model's estimates: ``eps`` (sigma) or ``eps - x0`` (flow)."""
    return eps if space == "sigma" else eps - x0


class OdeSampler(Sampler):
    """Base of the fixed-step ODE samplers: the ``space`` option and its check before any call."""

    class Config(SamplerConfig):
        space: OdeSpace = Field("auto", description=ODE_SPACE_HELP)

    def check(self, chain: SamplingChain) -> None:
        ode_space(self.config.space, chain)
