"""Camera motion as a signal: `{pan, tilt, zoom}` strengths, embedded like the timestep.

Why a signal and not a prompt word: a number works whatever the prompt says,
can be scaled (0.5 = half the speed), and combined (pan + zoom). The DiT gets
a 4-vector `[pan, tilt, zoom, given]`; `given = 0` (all zeros) means "no
explicit camera": the model then follows the prompt, which is how it was
trained on the share of clips whose camera was dropped.

Sign conventions follow Shapes World: pan +1 = the camera moves right (the
scene drifts left in the frame), tilt +1 = the camera moves up, zoom +1 = in.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

import torch

from kinema.errors import KinemaInputError

CAMERA_DIM = 4  # pan, tilt, zoom, given
MAX_STRENGTH = 2.0  # beyond twice the trained speed the model is extrapolating blindly

_NAMED: dict[str, tuple[float, float, float]] = {
    "static": (0.0, 0.0, 0.0),
    "pan left": (-1.0, 0.0, 0.0),
    "pan right": (1.0, 0.0, 0.0),
    "tilt up": (0.0, 1.0, 0.0),
    "tilt down": (0.0, -1.0, 0.0),
    "zoom in": (0.0, 0.0, 1.0),
    "zoom out": (0.0, 0.0, -1.0),
}


@dataclass(frozen=True)
class CameraMotion:
    pan: float = 0.0
    tilt: float = 0.0
    zoom: float = 0.0

    def __post_init__(self) -> None:
        for name in ("pan", "tilt", "zoom"):
            v = getattr(self, name)
            if not (isinstance(v, (int, float)) and -MAX_STRENGTH <= v <= MAX_STRENGTH):
                raise KinemaInputError(f"camera {name} must be between {-MAX_STRENGTH:g} and {MAX_STRENGTH:g}, got {v}")

    @staticmethod
    def named(name: str) -> "CameraMotion":
        """One of Shapes World's camera moves ("pan left", "zoom in", ...)."""
        key = " ".join(name.lower().replace("_", " ").replace("-", " ").split())
        if key not in _NAMED:
            raise KinemaInputError(f"unknown camera move {name!r}; known: {', '.join(_NAMED)}")
        return CameraMotion(*_NAMED[key])

    @staticmethod
    def parse(value: Any) -> "CameraMotion":
        """A CameraMotion from a name, a {pan, tilt, zoom} mapping, or a CameraMotion."""
        if isinstance(value, CameraMotion):
            return value
        if isinstance(value, str):
            return CameraMotion.named(value)
        if isinstance(value, Mapping):
            unknown = set(value) - {"pan", "tilt", "zoom"}
            if unknown:
                raise KinemaInputError(f"unknown camera field(s) {', '.join(sorted(unknown))}; use pan, tilt, zoom")
            try:
                numbers = {k: float(v) for k, v in value.items()}
            except (TypeError, ValueError):
                raise KinemaInputError(f"camera strengths must be numbers, got {dict(value)}") from None
            return CameraMotion(**numbers)
        raise KinemaInputError(f"camera must be a name or {{pan, tilt, zoom}}, got {value!r}")

    def nearest_name(self) -> str:
        """The Shapes World move this is closest to (for captions and the judge)."""
        best = min(_NAMED.items(), key=lambda kv: sum((a - b) ** 2 for a, b in zip(kv[1], (self.pan, self.tilt, self.zoom))))
        return best[0]

    def vector(self) -> list[float]:
        return [float(self.pan), float(self.tilt), float(self.zoom), 1.0]


def camera_tensor(cameras: list[CameraMotion | None]) -> torch.Tensor:
    """[B, 4]: one row per sample, all zeros where no camera is given."""
    return torch.tensor([c.vector() if c is not None else [0.0] * CAMERA_DIM for c in cameras], dtype=torch.float32)


def camera_from_metadata(entry: Mapping[str, Any]) -> CameraMotion | None:
    """A clip's camera: an explicit `camera` {pan, tilt, zoom}/name, else Shapes World's `scene.camera`."""
    value = entry.get("camera")
    if value is None and isinstance(entry.get("scene"), Mapping):
        value = entry["scene"].get("camera")
    return None if value is None else CameraMotion.parse(value)
