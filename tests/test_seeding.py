"""Tests of ned.seeding: seeding, explicit generators and RNG-state snapshots."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from ned.seeding import (capture_rng_state, derive_seed, numpy_generator, restore_rng_state, seed_everything,
                         torch_generator)

torch.set_num_threads(1)


def _draws() -> tuple[float, float, torch.Tensor]:
    return random.random(), float(np.random.random()), torch.rand(3)


class TestSeedEverything:
    def test_same_seed_same_draws(self):
        seed_everything(7)
        a = _draws()
        seed_everything(7)
        b = _draws()
        assert a[:2] == b[:2] and torch.equal(a[2], b[2])

    def test_other_seed_other_draws(self):
        seed_everything(7)
        a = _draws()
        seed_everything(8)
        b = _draws()
        assert a[0] != b[0] and a[1] != b[1] and not torch.equal(a[2], b[2])


class TestGenerators:
    def test_numpy_generator_equals_default_rng(self):
        assert np.array_equal(numpy_generator(5).permutation(20), np.random.default_rng(5).permutation(20))
        assert np.array_equal(numpy_generator(3, 1, 0).permutation(20), np.random.default_rng((3, 1, 0)).permutation(20))

    def test_numpy_generator_keys_matter(self):
        assert not np.array_equal(numpy_generator(3, 1).random(4), numpy_generator(3, 2).random(4))

    def test_derive_seed(self):
        assert derive_seed(3, 1, 0) == derive_seed(3, 1, 0)
        assert len({derive_seed(3, s) for s in range(100)}) == 100
        assert all(0 <= derive_seed(s, 9) < 2**63 for s in range(20))

    def test_torch_generator(self):
        a = torch.randn(4, generator=torch_generator(11))
        assert torch.equal(a, torch.randn(4, generator=torch.Generator().manual_seed(11)))
        assert not torch.equal(a, torch.randn(4, generator=torch_generator(derive_seed(11, 1))))

    def test_generators_leave_global_state_alone(self):
        seed_everything(1)
        numpy_generator(2).random(10)
        torch.randn(10, generator=torch_generator(2))
        a = _draws()
        seed_everything(1)
        b = _draws()
        assert a[:2] == b[:2] and torch.equal(a[2], b[2])


class TestRngState:
    def test_round_trip(self):
        seed_everything(4)
        state = capture_rng_state()
        a = _draws()
        _draws()
        restore_rng_state(state)
        b = _draws()
        assert a[:2] == b[:2] and torch.equal(a[2], b[2])

    def test_survives_safe_torch_load(self, tmp_path):
        seed_everything(4)
        torch.save({"rng": capture_rng_state()}, tmp_path / "s.pt")
        a = _draws()
        restore_rng_state(torch.load(tmp_path / "s.pt", weights_only=True)["rng"])
        b = _draws()
        assert a[:2] == b[:2] and torch.equal(a[2], b[2])

    def test_old_layout_python_as_list(self):
        version, internal, gauss = random.getstate()
        old = {"torch": torch.get_rng_state(), "python": [version, list(internal), gauss]}
        a = random.random(), torch.rand(2)
        restore_rng_state(old)
        b = random.random(), torch.rand(2)
        assert a[0] == b[0] and torch.equal(a[1], b[1])

    def test_missing_entries_left_alone(self):
        seed_everything(5)
        expected = np.random.get_state()[1].copy()
        restore_rng_state({})
        assert np.array_equal(np.random.get_state()[1], expected)

    @pytest.mark.parametrize("key", ["python", "numpy", "torch", "cuda"])
    def test_keys(self, key):
        assert key in capture_rng_state()
