"""Real-set features computed once: the cache, and the base of metrics that compare against them.

FVD and KVD compare I3D features of generated clips with those of a fixed real set. Extracting the
real features (2048 clips through I3D at 224x224) costs as much as scoring the samples, and it is
the same work at every evaluation. So the real set's features are kept:

- in memory, once a metric with a ``reference`` identity has computed them (``compute``), so later
  guidance scales and ``reset`` calls reuse them;
- on disk, in ``cache_dir``, as ``i3d-reference-<key>.safetensors``.

The key is a SHA-256 of everything that changes the features: the protocol (size, crop, value range,
8-bit rounding, clip length, number of real clips), the network's weights (a fingerprint of its
tensors, so a different file or a test's random network never hits another's entry), and the real
set's identity string that the caller passes (``reference`` / :meth:`set_reference`), e.g.
``"ucf101/train+test/stride1/16f"``. The caller is responsible for that string naming the clips: the
metric cannot see which clips it was fed.

Once a reference is loaded, ``update(real=...)`` ignores real clips (no feature extraction) and
``needs_real`` is False, so a caller can skip loading them at all.
"""

from __future__ import annotations

import abc
import hashlib
import json
import os
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from vqvdm_core.interfaces import Metric
from vqvdm_core.interfaces.configurable import FilePurpose

from .feature_networks import I3DFeatures, I3DProtocol, check_frames, i3d_weight_file
from .feature_networks import load_i3d_network, network_fingerprint

__all__ = ["ReferenceCache", "ReferenceFeatureMetric"]


class ReferenceCache:
    """Real-set feature matrices on disk, one safetensors file per key (written atomically)."""

    def __init__(self, folder: str | os.PathLike[str]):
        self.folder = Path(folder).expanduser()

    @staticmethod
    def make_key(fields: dict[str, Any]) -> str:
        """A stable key for ``fields`` (JSON with sorted keys, SHA-256, 32 hex digits)."""
        blob = json.dumps(fields, sort_keys=True, default=str).encode()
        return hashlib.sha256(blob).hexdigest()[:32]

    def path(self, key: str) -> Path:
        return self.folder / f"i3d-reference-{key}.safetensors"

    def load(self, key: str) -> Tensor | None:
        """The cached ``(N, D)`` features of ``key``, or None."""
        path = self.path(key)
        if not path.is_file():
            return None
        from safetensors.torch import load_file

        return load_file(str(path))["features"]

    def save(self, key: str, features: Tensor, metadata: dict[str, Any]) -> Path:
        """Write ``features`` under ``key`` (temp file, then rename); ``metadata`` is stored as text."""
        from safetensors.torch import save_file

        self.folder.mkdir(parents=True, exist_ok=True)
        path = self.path(key)
        tmp = path.with_suffix(f".tmp{os.getpid()}")
        save_file({"features": features.detach().cpu().contiguous()}, str(tmp),
                  metadata={k: json.dumps(v, default=str) for k, v in metadata.items()})
        os.replace(tmp, path)
        return path


class ReferenceFeatureMetric(Metric, abc.ABC):
    """A metric of I3D features of generated clips against a real set whose features may be cached.

    Subclasses define ``Config`` (an :class:`I3DProtocol`) and :meth:`score`. ``network`` (keyword)
    supplies an already-built feature network instead of loading the configured weight file (tests,
    custom networks); ``torchscript`` says whether it has the TorchScript I3D call signature.
    """

    requires_real: ClassVar[bool] = True
    name: ClassVar[str] = "feature metric"

    class Config(I3DProtocol):
        pass

    @classmethod
    def missing_files(cls, config: Any, *, purpose: FilePurpose = "use") -> list[str]:
        """The I3D weight file, if it cannot be found."""
        return i3d_weight_file(config).missing(config.i3d_weights)

    def __init__(self, config: I3DProtocol | None = None, *, network: nn.Module | None = None,
                 torchscript: bool = False, **overrides: Any):
        self.config = cfg = self.resolve_config(config, overrides)
        if network is None:
            network = load_i3d_network(cfg)
            torchscript = cfg.i3d_format == "torchscript"
            self._weights = i3d_weight_file(cfg).filename
        else:
            self._weights = f"custom network ({type(network).__name__})"
        self.extractor = I3DFeatures(network, torchscript=torchscript, protocol=cfg)
        self._fingerprint: str | None = None
        self._real: list[Tensor] = []
        self._fake: list[Tensor] = []
        self._num_real = 0
        self._num_fake = 0
        self._reference: Tensor | None = None
        self._reference_source: str | None = None
        self._last_counts: tuple[int, int] = (0, 0)
        if cfg.reference:
            self._try_load_reference()

    # -- reference set -------------------------------------------------------------------------

    def set_reference(self, identity: str) -> bool:
        """Name the real set (e.g. ``"ucf101/train+test/stride1/16f"``); True if its features were cached.

        Changing the identity forgets real features accumulated or loaded for another identity.
        """
        if identity != self.config.reference:
            self.config.reference = identity
            self._reference, self._reference_source = None, None
            self._real, self._num_real = [], 0
        return self._try_load_reference()

    @property
    def needs_real(self) -> bool:
        """False once the real set's features are known (cached or computed): real clips are then ignored."""
        return self._reference is None

    def reference_key(self) -> str:
        """The cache key of the current protocol, network weights and real-set identity."""
        if self._fingerprint is None:
            self._fingerprint = network_fingerprint(self.extractor.network)
        c = self.config
        return ReferenceCache.make_key({
            "features": "i3d-logits", "network": self._fingerprint, "torchscript": self.extractor.torchscript,
            "resolution": c.resolution, "spatial": c.spatial, "value_range": c.value_range,
            "quantize": c.quantize, "num_frames": c.num_frames, "max_real": c.max_real,
            "reference": c.reference,
        })

    def _cache(self) -> ReferenceCache | None:
        return ReferenceCache(self.config.cache_dir) if self.config.cache_dir else None

    def _try_load_reference(self) -> bool:
        if self._reference is not None:
            return True
        cache = self._cache()
        if cache is None or not self.config.reference:
            return False
        features = cache.load(self.reference_key())
        if features is None:
            return False
        self._reference, self._reference_source = features, "cache"
        self._real, self._num_real = [], 0
        return True

    # -- Metric --------------------------------------------------------------------------------

    def update(self, *, real: Tensor | None = None, fake: Tensor | None = None,
               labels: Tensor | None = None, fps: Tensor | None = None) -> None:
        c = self.config
        if real is not None and self._reference is None:
            check_frames(real, c.num_frames, self.name)
            take = real[: max(0, c.max_real - self._num_real)]
            if len(take):
                self._real.append(self.extractor(take).cpu())
                self._num_real += len(take)
        if fake is not None:
            check_frames(fake, c.num_frames, self.name)
            take = fake[: max(0, c.max_fake - self._num_fake)]
            if len(take):
                self._fake.append(self.extractor(take).cpu())
                self._num_fake += len(take)

    def compute(self) -> dict[str, float]:
        real = self._reference if self._reference is not None else (
            torch.cat(self._real) if self._real else None)
        if real is None or len(real) < 2:
            raise ValueError(f"{self.name} needs at least 2 real clips; got {0 if real is None else len(real)}. "
                             "Feed real clips with update(real=...) or set a cached reference.")
        if self._num_fake < 2:
            raise ValueError(f"{self.name} needs at least 2 generated clips; got {self._num_fake}")
        fake = torch.cat(self._fake)
        if self._reference is None and self.config.reference:
            # Freeze the real set for later scales / resets, and cache it on disk when asked to.
            self._reference, self._reference_source = real, "computed"
            self._real = []
            cache = self._cache()
            if cache is not None:
                cache.save(self.reference_key(), real, {"protocol": self.protocol_fields(),
                                                        "count": len(real)})
        self._last_counts = (len(real), len(fake))
        values = self.score(real, fake)
        values.update(num_real=float(len(real)), num_fake=float(len(fake)))
        return values

    @abc.abstractmethod
    def score(self, real: Tensor, fake: Tensor) -> dict[str, float]:
        """The metric's values from ``(N, D)`` real and ``(M, D)`` generated features."""

    def reset(self) -> None:
        """Forget generated features and real features not yet frozen as the reference."""
        self._fake, self._num_fake = [], 0
        if self._reference is None:
            self._real, self._num_real = [], 0

    def to(self, device: torch.device | str) -> "ReferenceFeatureMetric":
        self.extractor.network.to(device)
        return self

    def protocol_fields(self) -> dict[str, Any]:
        """The configured settings that change the number (memory/caching knobs left out)."""
        return self.config.model_dump(exclude={"batch_size", "cache_dir", "i3d_weights"})

    def protocol(self) -> dict[str, Any]:
        c = self.config
        fields = self.protocol_fields()
        if self.extractor.torchscript or not self._weights.endswith(".pt"):
            fields.pop("i3d_bn_eps", None)
        num_real, num_fake = self._last_counts
        standard = (c.resolution == 224 and c.spatial == "resize" and c.value_range == "symmetric"
                    and c.num_frames == 16 and self._weights.endswith(".pt"))
        fields.update(
            weights=self._weights,
            features="I3D Kinetics-400 logits (400-d), averaged over time positions",
            reference_source=self._reference_source or "fed",
            num_real=num_real, num_fake=num_fake,
            paper_comparable=bool(standard and num_real >= 2048 and num_fake >= 2048),
        )
        return fields
