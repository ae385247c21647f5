"""Which torch devices to run on, for the encoder and the trainer alike."""

from __future__ import annotations

from collections.abc import Sequence

import torch


def pick_device(device: str | None = None) -> torch.device:
    """``None`` means the best available: cuda > mps > cpu."""
    if device:
        return torch.device(device)
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def pick_devices(device: str | Sequence[str] | None = None) -> list[torch.device]:
    """Devices to run on: a bare ``"cuda"`` means every visible GPU, a list means those."""
    if device is not None and not isinstance(device, (str, torch.device)):
        devices = [torch.device(d) for d in device]
        if not devices or len({d.type for d in devices}) != 1:
            raise ValueError(f"device: {list(device)!r} must be a non-empty list of one device type")
        return devices
    first = pick_device(str(device) if device is not None else None)
    if first.type == "cuda" and first.index is None:
        count = torch.cuda.device_count()
        return [torch.device("cuda", i) for i in range(count)] if count > 1 else [torch.device("cuda", 0)]
    return [first]
