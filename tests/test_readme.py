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
    # `--model module:fn` puts the working directory (this tmp_path) on sys.path for good: restored afterwards
    monkeypatch.setattr(sys, "path", list(sys.path))
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


# ------------------------------------------------------------------------------------------------ claims in prose
# Statements of README.md that no code block shows, pinned where a check is cheap.


def _what_you_get_files() -> set[str]:
    """The file names in the first column of the README's "What you get" table (``runs/`` as a folder)."""
    text = README.read_text(encoding="utf-8")
    table = text.split("**What you get**", 1)[1].split("\n\n", 2)[1]
    names = set()
    for row in table.splitlines()[2:]:
        first = row.split("|")[1].strip()
        if first.startswith("`"):
            names.add(first.strip("`"))
    return names


@pytest.mark.usefixtures("_in_tmp")
def test_readme_lists_every_file_compare_writes(monkeypatch: pytest.MonkeyPatch) -> None:
    # "What you get (in --out)": the table names each file a comparison leaves in its folder, and no other
    import seglosses

    _tiny_compare(monkeypatch)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        seglosses.compare(["dice", "focal"], data="synthetic", seeds=2, quick=True, out="out", progress=False,
                          log=lambda _: None)  # fmt: skip
    finally:
        torch.set_num_threads(threads)
    written = {p.name + ("/" if p.is_dir() else "") for p in Path("out").iterdir()}
    assert written == _what_you_get_files(), (written, _what_you_get_files())
    # runs/: one JSON and one .npz of preview predictions per finished (loss, seed)
    runs = sorted(p.name for p in Path("out/runs").iterdir())
    assert runs == [f"{loss}__seed{s}.{ext}" for loss in ("dice", "focal") for s in (0, 1) for ext in ("json", "npz")]


_ONE_SIZE_MODULE = '''
import torch


class OneSize(torch.nn.Module):
    """A model that takes inputs of exactly size x size pixels (as a transformer with a fixed img_size)."""

    def __init__(self, in_channels, out_channels, size):
        super().__init__()
        self.size = size
        self.conv = torch.nn.Conv2d(in_channels, out_channels, 3, padding=1)

    def forward(self, x):
        if tuple(x.shape[2:]) != (self.size, self.size):
            raise ValueError(f"takes {self.size}x{self.size} only; got {tuple(x.shape[2:])}")
        return self.conv(x)


def one_size_32(in_channels, out_channels):
    return OneSize(in_channels, out_channels, 32)
'''


@pytest.mark.usefixtures("_in_tmp")
def test_one_size_model_on_the_command_line() -> None:
    # "A model that takes one input size only works with --window and --crop of that size [...] without --crop a
    # named dataset's or folder's own crop [...] is rounded up to --size-multiple". The synthetic 2D data trains on
    # 48 x 48 crops: --size-multiple 32 alone rounds them up to 64, which a 32-only model refuses before training;
    # --crop 32,32 trains it.
    pytest.importorskip("typer")
    from typer.testing import CliRunner

    from seglosses.cli.app import app

    Path("onesize.py").write_text(_ONE_SIZE_MODULE, encoding="utf-8")
    common = ["compare", "--data", "synthetic", "--losses", "dice", "--seeds", "1", "--epochs", "1"]
    common += ["--steps-per-epoch", "1", "--batch-size", "2", "--device", "cpu", "--threads", "1", "--no-progress"]
    common += ["--model", "onesize:one_size_32", "--window", "32,32", "--size-multiple", "32"]
    threads = torch.get_num_threads()
    try:
        refused = CliRunner().invoke(app, [*common, "--out", "b"])
        ok = CliRunner().invoke(app, [*common, "--crop", "32,32", "--out", "a"])
    finally:
        torch.set_num_threads(threads)
        sys.modules.pop("onesize", None)
    assert refused.exit_code == 2, refused.output
    assert "first training batch (2, 1, 64, 64)" in " ".join(refused.output.split())
    assert not Path("b").exists()  # before training and before any file
    assert ok.exit_code == 0, ok.output
    assert Path("a/runs/dice__seed0.json").is_file()


def test_default_data_trains_on_96_pixel_crops() -> None:
    # the crop the README names for the default data ("96 x 96 for the default data")
    import importlib.util

    if importlib.util.find_spec("ndev_sampledata") is None:  # its file is read directly: no import of the package
        pytest.skip("the default dataset's package ndev-sampledata is not installed")
    from seglosses.cli.data import load_data

    assert load_data("scratch-assay").crop == (96, 96)


_MONAI_OTHER_DIMS = {
    # tests/test_compare_models.py runs UNet in 2D and 3D and each of these in one dimension; the other one here
    "BasicUNet-2d": ("BasicUNet", {"spatial_dims": 2, "features": (4, 4, 8, 8, 8, 4)}, (32, 32), (37, 45)),
    "AttentionUnet-3d": (
        "AttentionUnet",
        {"spatial_dims": 3, "channels": (4, 8, 16), "strides": (2, 2)},
        (16, 16, 16),
        (20, 13, 22),
    ),
    "SegResNet-2d": (
        "SegResNet",
        {
            "spatial_dims": 2,
            "init_filters": 4,
            "blocks_down": (1, 1, 1),
            "blocks_up": (1, 1),
            "norm": ("GROUP", {"num_groups": 2}),
        },
        (32, 32),
        (37, 45),
    ),
    "DynUNet-3d": (
        "DynUNet",
        {
            "spatial_dims": 3,
            "kernel_size": [3, 3, 3],
            "strides": [1, 2, 2],
            "upsample_kernel_size": [2, 2],
            "filters": [4, 8, 16],
        },
        (16, 16, 16),
        (20, 13, 22),
    ),
    "VNet-3d": ("VNet", {"spatial_dims": 3}, (32, 32, 32), (20, 40, 33)),
    # these two need einops; UNETR takes one input size (window = crop = img_size), SwinUNETR sizes divisible by 32
    "UNETR-2d": (
        "UNETR",
        {"img_size": (32, 32), "spatial_dims": 2, "feature_size": 4, "hidden_size": 48, "mlp_dim": 96, "num_heads": 4},
        (32, 32),
        (45, 37),
    ),
    "UNETR-3d": (
        "UNETR",
        {
            "img_size": (32, 32, 32),
            "spatial_dims": 3,
            "feature_size": 4,
            "hidden_size": 48,
            "mlp_dim": 96,
            "num_heads": 4,
        },
        (32, 32, 32),
        (20, 40, 33),
    ),
    "SwinUNETR-2d": (
        "SwinUNETR",
        {"spatial_dims": 2, "feature_size": 12, "depths": (1, 1, 1, 1), "num_heads": (1, 1, 1, 1)},
        (64, 64),
        (45, 70),
    ),
    "SwinUNETR-3d": (
        "SwinUNETR",
        {"spatial_dims": 3, "feature_size": 12, "depths": (1, 1, 1, 1), "num_heads": (1, 1, 1, 1)},
        (64, 64, 64),
        (40, 70, 64),
    ),
}


class _Cubes(torch.utils.data.Dataset):  # type: ignore[type-arg]
    """(image (1, *S), mask (*S)) with one 6-pixel square/cube of class 1 on a noisy background."""

    def __init__(self, n: int, size: tuple[int, ...], seed: int) -> None:
        self.n, self.size, self.seed = n, size, seed

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        g = torch.Generator().manual_seed(100 * self.seed + i)
        mask = torch.zeros(self.size, dtype=torch.int64)
        corner = [int(torch.randint(0, s - 6, (1,), generator=g)) for s in self.size]
        mask[tuple(slice(k, k + 6) for k in corner)] = 1
        return (mask.float() + 0.2 * torch.rand(self.size, generator=g))[None], mask


@pytest.mark.parametrize("name", list(_MONAI_OTHER_DIMS))
def test_monai_networks_named_in_the_readme_run_in_2d_and_3d(name: str) -> None:
    # "MONAI's UNet, BasicUNet, AttentionUnet, SegResNet, DynUNet, VNet and UNETR/SwinUNETR [...] run this way in 2D
    # and 3D": one training step and the validation of an image of another size (larger or smaller than the crop)
    import functools

    import seglosses
    from seglosses.cli.train import TrainConfig

    nets = pytest.importorskip("monai.networks.nets")
    cls, kwargs, crop, val = _MONAI_OTHER_DIMS[name]
    if cls in ("UNETR", "SwinUNETR"):
        pytest.importorskip("einops")
    extra: dict[str, Any] = {"window": crop} if cls == "UNETR" else {}
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        table = seglosses.compare(
            ["dice"], data=(_Cubes(2, crop, 0), _Cubes(1, val, 1)), num_classes=2,
            model=functools.partial(getattr(nets, cls), **kwargs), seeds=1, crop=crop, out=None, progress=False,
            config=TrainConfig(epochs=1, steps_per_epoch=1, batch_size=2 if cls != "VNet" else 1),
            log=lambda _: None, **extra,
        )  # fmt: skip
    finally:
        torch.set_num_threads(threads)
    (run,) = table.runs
    assert run.status == "ok", run.status
    assert 0.0 <= run.metrics["dice"]["mean"] <= 1.0
