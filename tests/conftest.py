"""Test-wide settings: offline Hugging Face, two threads, every test seeded, a seeded generator."""

from __future__ import annotations

import os

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("MPLBACKEND", "Agg")
torch.set_num_threads(min(2, torch.get_num_threads()))


@pytest.fixture(autouse=True)
def _seeded() -> None:
    """torch's global generator starts from a random seed in each process; models built in
    tests without a seed would differ from run to run (and a random U-Net sometimes has an
    all-zero gradient at a pixel), so every test starts from the same seed."""
    torch.manual_seed(0)


@pytest.fixture
def rng() -> torch.Generator:
    return torch.Generator().manual_seed(1234)
