"""Every ```python code block of README.md runs.

Each block is extracted from the README (named after the heading above it) and executed on its own, in a fresh
namespace, in a temporary working directory. A block that uses names it does not define (a model, a loader, a
process group started by torchrun) gets them from its entry in ``SETUPS`` below: small generated data only, never an
import the block itself should make. Adaptations to this machine are listed in ``ADAPT`` with the reason (CPU
instead of CUDA), applied as exact text substitutions that must match; ``SETUPS`` may also shrink a training
schedule (the compare example). No block is skipped: a README block without an entry runs with no setup at all, so
a new example that needs data fails until it gets an entry.
"""

from __future__ import annotations

import os
import re
import socket
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import torch

README = Path(__file__).resolve().parents[1] / "README.md"


def _blocks(text: str) -> list[tuple[str, str]]:
    """``(id, code)`` of every ```python block; the id is the slug of the heading above it (numbered if repeated)."""
    out: list[tuple[str, str]] = []
    heading, code, inside = "top", "", False
    for line in text.splitlines(keepends=True):
        if inside:
            if line.startswith("```"):
                base = re.sub(r"\W+", "_", heading.lower()).strip("_")
                n = sum(1 for i, _ in out if re.fullmatch(re.escape(base) + r"(_\d+)?", i))
                out.append((base if n == 0 else f"{base}_{n + 1}", code))
                inside = False
            else:
                code += line
        elif line.startswith("```python"):
            code, inside = "", True
        elif line.startswith("#"):
            heading = line.lstrip("#").strip()
    assert not inside, "README.md: a ```python block is not closed"
    return out


BLOCKS = _blocks(README.read_text(encoding="utf-8"))
IDS = [block for block, _ in BLOCKS]


def _metrics_data(ns: dict[str, Any]) -> None:
    # "## Metrics": multiclass logits/targets with ignored pixels (255), binary probabilities, a model and a loader
    g = torch.Generator().manual_seed(0)
    ns["logits"] = torch.randn(2, 4, 8, 8, generator=g)
    target = torch.randint(0, 4, (2, 8, 8), generator=g)
    target[:, 0, :2] = 255
    ns["target"] = target
    ns["probs"] = torch.rand(2, 1, 8, 8, generator=g)
    ns["mask"] = (torch.rand(2, 1, 8, 8, generator=g) > 0.5).long()
    ns["model"] = torch.nn.Conv2d(1, 4, 1)
    ns["val_loader"] = [(torch.randn(2, 1, 8, 8, generator=g), torch.randint(0, 4, (2, 8, 8), generator=g))]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _single_process_env(monkeypatch: pytest.MonkeyPatch) -> None:
    # what torchrun sets, for a world of one process
    for key, value in {"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(_free_port()), "RANK": "0"}.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("WORLD_SIZE", "1")
    monkeypatch.setenv("LOCAL_RANK", "0")


def _ddp_training(ns: dict[str, Any]) -> None:
    # "### Exact global losses under DDP": the block starts the process group itself (torchrun's environment above)
    g = torch.Generator().manual_seed(1)
    ns["net"] = torch.nn.Conv2d(1, 3, 1)
    ns["local_rank"] = 0
    ns["loader"] = [(torch.randn(2, 1, 8, 8, generator=g), torch.randint(0, 3, (2, 8, 8), generator=g))]
    ns["optimizer"] = torch.optim.SGD(ns["net"].parameters(), lr=0.1)


def _ddp_metrics(ns: dict[str, Any]) -> None:
    # "### Metrics across ranks": a process group already started (by torchrun and the training script)
    import torch.distributed as dist

    dist.init_process_group("gloo")
    g = torch.Generator().manual_seed(2)
    ns["model"] = torch.nn.Conv2d(1, 4, 1)
    target = torch.randint(0, 4, (2, 8, 8), generator=g)
    target[0, 0] = 255
    ns["val_loader"] = [(torch.randn(2, 1, 8, 8, generator=g), target)]


def _tiny_compare(monkeypatch: pytest.MonkeyPatch) -> None:
    # the block's quick=True schedule (4 epochs x 10 steps, 3 losses x 2 seeds) takes minutes on 2 busy cores
    from seglosses.cli.train import TrainConfig

    tiny = TrainConfig(epochs=1, steps_per_epoch=2, batch_size=2, base=4, depth=2)
    monkeypatch.setattr(TrainConfig, "preset", classmethod(lambda cls, **_: tiny))


class _Pairs(torch.utils.data.Dataset):  # type: ignore[type-arg]
    """A map-style Dataset of (image (1, 32, 32) float, mask (32, 32) int64) with 4 classes: squares of class c."""

    def __init__(self, n: int, seed: int) -> None:
        g = torch.Generator().manual_seed(seed)
        self.items = []
        for _ in range(n):
            mask = torch.zeros(32, 32, dtype=torch.int64)
            for c in (1, 2, 3):
                y, x = (int(v) for v in torch.randint(0, 24, (2,), generator=g))
                mask[y : y + 8, x : x + 8] = c
            image = mask[None].float() / 3 + 0.1 * torch.randn(1, 32, 32, generator=g)
            self.items.append((image, mask))

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.items[i]


def _smp_stand_in(monkeypatch: pytest.MonkeyPatch) -> None:
    # the block builds a segmentation_models_pytorch U-Net (not a dependency, and its encoders are large): where smp
    # is not installed, a stand-in module whose Unet takes the same arguments and returns a small convolutional net
    _tiny_compare(monkeypatch)
    try:
        import segmentation_models_pytorch  # noqa: F401
    except ImportError:
        import types

        def unet(encoder_name: str, *, encoder_weights: Any, in_channels: int, classes: int) -> torch.nn.Module:
            assert encoder_weights is None  # nothing may be downloaded
            return torch.nn.Sequential(
                torch.nn.Conv2d(in_channels, 8, 3, padding=1), torch.nn.ReLU(), torch.nn.Conv2d(8, classes, 1)
            )

        monkeypatch.setitem(sys.modules, "segmentation_models_pytorch", types.SimpleNamespace(Unet=unet))


def _own_model_data(ns: dict[str, Any]) -> None:
    # "## `seglosses compare`", second block: the user's own Datasets
    ns["train_ds"] = _Pairs(6, seed=3)
    ns["val_ds"] = _Pairs(2, seed=4)


# block id -> (setup of its namespace, monkeypatching of the environment)
SETUPS: dict[str, tuple[Callable[[dict[str, Any]], None] | None, Callable[[pytest.MonkeyPatch], None] | None]] = {
    "quick_start": (None, None),  # self-contained
    "metrics": (_metrics_data, None),
    "seglosses_compare_which_loss_for_my_data": (None, _tiny_compare),
    "seglosses_compare_which_loss_for_my_data_2": (_own_model_data, _smp_stand_in),
    "exact_global_losses_under_ddp": (_ddp_training, _single_process_env),
    "metrics_across_ranks": (_ddp_metrics, _single_process_env),
}

# block id -> [(text in the block, replacement, why)]: each must occur in the block
ADAPT: dict[str, list[tuple[str, str, str]]] = {
    "seglosses_compare_which_loss_for_my_data_2": [
        ('device="cuda"', 'device="cpu"', "no GPU here"),
        ("num_workers=4", "num_workers=0", "loader worker processes cost seconds to start on 2 busy cores"),
    ],
    "exact_global_losses_under_ddp": [
        ('dist.init_process_group("nccl")', 'dist.init_process_group("gloo")', "no GPU here: gloo on CPU"),
        ("net.cuda(), device_ids=[local_rank]", "net, device_ids=None", "no GPU here: DDP on CPU"),
    ],
}


@pytest.fixture
def _in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.chdir(tmp_path)
    yield
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def test_readme_has_python_blocks_and_every_entry_is_used() -> None:
    ids = IDS
    assert len(ids) >= 4, ids
    assert len(set(ids)) == len(ids), f"two README blocks share an id: {ids}"
    stale = (set(SETUPS) | set(ADAPT)) - set(ids)
    assert not stale, f"entries for README blocks that no longer exist: {stale}"


@pytest.mark.usefixtures("_in_tmp")
@pytest.mark.parametrize(("block", "code"), BLOCKS, ids=IDS)
def test_readme_python_block_runs(block: str, code: str, monkeypatch: pytest.MonkeyPatch) -> None:
    for old, new, _why in ADAPT.get(block, []):
        assert old in code, f"README block {block}: the adaptation target {old!r} is gone; update ADAPT"
        code = code.replace(old, new)
    setup, patch = SETUPS.get(block, (None, None))
    if patch is not None:
        patch(monkeypatch)
    namespace: dict[str, Any] = {"__name__": "__readme__"}
    if setup is not None:
        setup(namespace)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        exec(compile(code, f"README.md:{block}", "exec"), namespace)  # noqa: S102 - the README's own code
    finally:
        torch.set_num_threads(threads)
    assert os.getcwd() != str(README.parent)  # the block wrote nothing into the repository
