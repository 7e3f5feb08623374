"""Shared fixtures: tiny models built in-process (no downloads)."""

from __future__ import annotations

import pytest
import torch

from floatalk.config import preset
from floatalk.models.float_model import FloatModel


def one_line_error(capsys: pytest.CaptureFixture[str], argv: list[str]) -> str:
    """Run the CLI on ``argv``; assert exit 2 with one ``floatalk: error:`` line on stderr; return it."""
    from floatalk.cli import main

    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("floatalk: error: ") and "\n" not in err, err
    return err


def randomize_(module: torch.nn.Module, seed: int = 0, std: float = 0.2) -> torch.nn.Module:
    """Give every parameter random N(0, std) values (the adaLN-Zero init makes FMT outputs 0)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * std)
    return module


def random_conditions(b=2, L=6, Lp=2, d=3, da=4, e=7, seed=0):
    """WindowConditions of random values: batch b, L current and Lp previous frames."""
    from floatalk.flow.conditions import WindowConditions

    g = torch.Generator().manual_seed(seed)
    return WindowConditions(
        audio=torch.randn(b, L, da, generator=g),
        source_motion=torch.randn(b, d, generator=g),
        emotion=torch.softmax(torch.randn(b, e, generator=g), -1),
        prev_motion=torch.randn(b, Lp, d, generator=g),
        prev_audio=torch.randn(b, Lp, da, generator=g),
    )


@pytest.fixture
def tiny_config():
    return preset("tiny")


@pytest.fixture
def tiny_model(tiny_config):
    torch.manual_seed(0)
    model = FloatModel(tiny_config)
    randomize_(model.fmt, seed=1)
    randomize_(model.audio_encoder.audio_projection, seed=2)
    return model.eval()


@pytest.fixture(scope="module")
def one_thread():
    """Torch on one thread for a module: tiny networks run far faster so than on two busy cores."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
