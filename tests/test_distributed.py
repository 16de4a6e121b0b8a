"""Tests of ned.distributed in a single process (the DDP paths run in the trainers' tests)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from ned.distributed import (DistInfo, all_ok, autocast, autocast_dtype, barrier, check_device_spec,
                             distributed_session, init_distributed, load_scaler_state, resolve_device, unwrap)
from ned.errors import DeviceError, InputError

torch.set_num_threads(1)


class TestResolveDevice:
    def test_smoke(self):
        assert resolve_device("cpu") == torch.device("cpu")
        assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")

    @pytest.mark.parametrize("spec", ["gpu7", "", "cuda:x", "meta"])
    def test_exception(self, spec):
        with pytest.raises(DeviceError):
            resolve_device(spec)

    def test_error_is_input_and_value_error(self):
        with pytest.raises(InputError):
            resolve_device("gpu7")
        with pytest.raises(ValueError, match="use auto, cpu, cuda or cuda:N"):
            resolve_device("gpu7")

    @pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
    def test_cuda_unavailable(self):
        with pytest.raises(DeviceError, match="--device cpu"):
            resolve_device("cuda")


class TestCheckDeviceSpec:
    @pytest.mark.parametrize("spec", ["auto", "cpu", "cuda", "cuda:3"])
    def test_valid(self, spec):
        check_device_spec(spec)

    @pytest.mark.parametrize("spec", ["gpu", "cuda:", "cuda:a", "CPU"])
    def test_exception(self, spec):
        with pytest.raises(ValueError, match="device must be"):
            check_device_spec(spec)


class TestSingleProcess:
    def test_init_distributed(self, monkeypatch):
        monkeypatch.delenv("WORLD_SIZE", raising=False)
        info, device = init_distributed("cpu")
        assert info == DistInfo() and info.is_main and not info.enabled and device == torch.device("cpu")

    def test_session_and_collectives_are_no_ops(self, monkeypatch):
        monkeypatch.setenv("WORLD_SIZE", "1")
        with distributed_session("cpu") as (info, device):
            barrier(info)
            assert all_ok(info, device, True) and not all_ok(info, device, False)
        assert not torch.distributed.is_initialized()

    def test_unwrap_plain_module(self):
        net = nn.Linear(2, 2)
        assert unwrap(net) is net


class TestPrecision:
    def test_cpu_is_full_precision(self):
        assert autocast_dtype(torch.device("cpu")) is None
        assert autocast_dtype(torch.device("cpu"), enabled=True) is None

    def test_disabled(self):
        assert autocast_dtype(torch.device("cuda"), enabled=False) is None

    def test_no_op_context(self):
        x = torch.ones(2, 2)
        with autocast(torch.device("cpu"), None):
            assert (x @ x).dtype == torch.float32

    def test_cpu_bfloat16_context(self):
        x = torch.ones(2, 2)
        with autocast(torch.device("cpu"), torch.bfloat16):
            assert (x @ x).dtype == torch.bfloat16


class TestLaunchChecks:
    def test_more_processes_than_gpus_is_a_clear_error(self, monkeypatch):
        """torchrun --nproc_per_node 2 on a one-GPU machine: a DeviceError naming the fix,
        not NCCL's own failure (or a hang) after two ranks landed on the same GPU."""
        monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
        monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
        for key, value in {"WORLD_SIZE": "2", "RANK": "1", "LOCAL_RANK": "1", "LOCAL_WORLD_SIZE": "2"}.items():
            monkeypatch.setenv(key, value)
        with pytest.raises(DeviceError, match="--nproc_per_node 1"):
            init_distributed("cuda")


class TestScalerState:
    def test_empty_state_resumes_into_an_enabled_scaler(self):
        """A checkpoint of a CPU / bf16 run (disabled scaler: empty state) resumes in fp16."""
        saved = torch.amp.GradScaler("cpu", enabled=False).state_dict()
        assert saved == {}
        scaler = torch.amp.GradScaler("cpu", enabled=True, init_scale=1024.0)
        load_scaler_state(scaler, saved)
        assert scaler.get_scale() == 1024.0
        other = torch.amp.GradScaler("cpu", enabled=True, init_scale=8.0)
        load_scaler_state(other, scaler.state_dict())
        assert other.get_scale() == 1024.0
