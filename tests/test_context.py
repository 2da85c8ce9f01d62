"""seed_everything: bit-for-bit repeatable on the CPU, torch's (slow) deterministic mode off accelerators."""

import torch

from seqbench.context import seed_everything


def test_deterministic_kernels_on_the_cpu_only():
    try:
        seed_everything(0, torch.device("cuda"))  # the device type decides; no GPU is touched
        assert not torch.are_deterministic_algorithms_enabled()
        seed_everything(0)
        assert torch.are_deterministic_algorithms_enabled()
        seed_everything(0, torch.device("hpu"))
        assert not torch.are_deterministic_algorithms_enabled()
        seed_everything(3, torch.device("cpu"))
        a = torch.rand(3)
        seed_everything(3, torch.device("cpu"))
        assert torch.are_deterministic_algorithms_enabled() and torch.equal(a, torch.rand(3))
    finally:
        seed_everything(0)
