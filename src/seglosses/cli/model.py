"""A small U-Net (2D or 3D) written in the project, deterministic from a seed; nothing is downloaded."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

__all__ = ["NotAModuleError", "UNet", "build_model", "call_factory", "factory_takes_channels", "load_factory"]


def _conv(ndim: int) -> type[nn.Conv2d] | type[nn.Conv3d]:
    return nn.Conv2d if ndim == 2 else nn.Conv3d


def _norm(ndim: int, channels: int) -> nn.Module:
    return nn.BatchNorm2d(channels) if ndim == 2 else nn.BatchNorm3d(channels)


class _Block(nn.Sequential):
    """Two (conv 3x3 -> batch norm -> ReLU) layers."""

    def __init__(self, ndim: int, cin: int, cout: int) -> None:
        conv = _conv(ndim)
        super().__init__(
            conv(cin, cout, 3, padding=1, bias=False),
            _norm(ndim, cout),
            nn.ReLU(inplace=True),
            conv(cout, cout, 3, padding=1, bias=False),
            _norm(ndim, cout),
            nn.ReLU(inplace=True),
        )


class UNet(nn.Module):
    """U-Net (Ronneberger et al. 2015) with ``depth`` poolings and ``base * 2**level`` channels.

    Spatial sizes must be divisible by ``2**depth`` (:func:`seglosses.cli.data.pad_to_multiple` pads them).

    Args:
        in_channels: image channels.
        out_channels: 1 logit channel for a binary task, C for a multiclass one.
        ndim: 2 (images) or 3 (volumes).
        base: channels of the first level (8 keeps CPU training fast).
        depth: number of 2x down-samplings.

    """

    def __init__(self, in_channels: int, out_channels: int, *, ndim: int = 2, base: int = 16, depth: int = 3) -> None:
        super().__init__()
        if ndim not in (2, 3):
            raise ValueError(f"UNet: `ndim` must be 2 or 3; got {ndim}")
        self.ndim = ndim
        self.depth = depth
        pool = nn.MaxPool2d if ndim == 2 else nn.MaxPool3d
        up = nn.ConvTranspose2d if ndim == 2 else nn.ConvTranspose3d
        chans = [base * 2**i for i in range(depth + 1)]
        self.down = nn.ModuleList([_Block(ndim, in_channels, chans[0])])
        self.down.extend(_Block(ndim, chans[i], chans[i + 1]) for i in range(depth))
        self.pool = pool(2)
        self.up = nn.ModuleList(up(chans[i + 1], chans[i], 2, stride=2) for i in reversed(range(depth)))
        self.dec = nn.ModuleList(_Block(ndim, 2 * chans[i], chans[i]) for i in reversed(range(depth)))
        self.head = _conv(ndim)(chans[0], out_channels, 1)

    def forward(self, x: Tensor) -> Tensor:
        """Return logits of shape ``(N, out_channels, *S)`` for ``x`` of shape ``(N, in_channels, *S)``."""
        skips = []
        for i, block in enumerate(self.down):
            x = block(x if i == 0 else self.pool(x))
            skips.append(x)
        skips.pop()
        for up, dec in zip(self.up, self.dec, strict=True):
            x = dec(torch.cat([skips.pop(), up(x)], dim=1))
        out: Tensor = self.head(x)
        return out


def build_model(in_channels: int, out_channels: int, *, ndim: int, seed: int, base: int = 16, depth: int = 3) -> UNet:
    """Build a :class:`UNet` whose initial weights depend only on ``seed`` (the global RNG is left untouched).

    Examples:
        >>> a = build_model(1, 3, ndim=2, seed=0, base=4)
        >>> b = build_model(1, 3, ndim=2, seed=0, base=4)
        >>> all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))
        True
        >>> a(torch.zeros(2, 1, 16, 24)).shape
        torch.Size([2, 3, 16, 24])

    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return UNet(in_channels, out_channels, ndim=ndim, base=base, depth=depth)


def load_factory(spec: str) -> Callable[..., nn.Module]:
    """The model factory named ``package.module:function`` (imported; the function must be callable).

    Raises:
        ValueError: ``spec`` is not ``module:function``, the module cannot be imported, or it has no such callable.

    Examples:
        >>> load_factory("seglosses.cli.model:UNet").__name__
        'UNet'

    """
    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise ValueError(f"--model must look like package.module:function (e.g. mypkg.nets:make_unet); got {spec!r}")
    import importlib
    import os
    import sys

    # The ``seglosses`` console script, unlike ``python -m seglosses``, does not put the working directory on
    # sys.path: a module next to where the command runs would not import (seen: `seglosses compare --model
    # mynets:unet` in the folder of mynets.py). It goes first, as with ``python -m``.
    here = os.getcwd()
    if not any(os.path.abspath(p or os.curdir) == here for p in sys.path):
        sys.path.insert(0, here)
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:
        hint = ""
        if (
            isinstance(exc, ModuleNotFoundError)
            and exc.name is not None
            and f"{module_name}.".startswith(f"{exc.name}.")
        ):
            hint = "; run the command from the folder that holds it, or add that folder to PYTHONPATH"
        raise ValueError(
            f"--model {spec!r}: cannot import {module_name!r} ({type(exc).__name__}: {exc}){hint}"
        ) from exc
    factory = module
    for part in attr.split("."):
        factory = getattr(factory, part, None)  # type: ignore[assignment]
        if factory is None:
            raise ValueError(f"--model {spec!r}: the module {module_name!r} has no attribute {attr!r}")
    if not callable(factory):
        raise ValueError(f"--model {spec!r}: {attr!r} is not callable")
    return factory


def factory_takes_channels(factory: Callable[..., nn.Module]) -> bool:
    """Whether ``factory`` accepts ``in_channels=`` and ``out_channels=`` keywords (named, or ``**kwargs``)."""
    import inspect

    try:
        params = inspect.signature(factory).parameters.values()
    except (TypeError, ValueError):  # a builtin without a signature: call it bare
        return False
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params):
        return True
    keyword = {
        p.name for p in params if p.kind in (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    }
    return {"in_channels", "out_channels"} <= keyword


def call_factory(factory: Callable[..., nn.Module], *, in_channels: int, out_channels: int, seed: int) -> nn.Module:
    """``factory(in_channels=, out_channels=)`` (or ``factory()``) with torch's CPU RNG seeded from ``seed``.

    The caller's RNG state is restored afterwards, so the weights depend only on ``seed`` and the factory.
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        if factory_takes_channels(factory):
            model = factory(in_channels=in_channels, out_channels=out_channels)
        else:
            model = factory()
    if not isinstance(model, nn.Module):
        raise NotAModuleError(model)
    return model


class NotAModuleError(TypeError):
    """The model factory returned something other than an ``nn.Module`` instance (the message says what)."""

    def __init__(self, returned: object) -> None:
        if isinstance(returned, type) and issubclass(returned, nn.Module):
            what = f"the class {returned.__name__} itself (return an instance: {returned.__name__}(...))"
        else:
            what = type(returned).__name__
        super().__init__(f"the model factory must return a torch.nn.Module; it returned {what}")
