"""The torchrun launcher takes its arguments (engine/launch.py), and a command records the arguments
`main(argv)` received, never ``sys.argv`` (so `main([...])` from Python records the right command)."""

from __future__ import annotations

import sys

from smallvision.engine.launch import torchrun_command, worker_args


def test_the_workers_repeat_the_command_without_nproc():
    assert worker_args(["train", "--nproc", "2", "--epochs", "1"]) == ["train", "--epochs", "1"]
    assert worker_args(["train", "--nproc=2", "--json"]) == ["train", "--json"]
    cmd = torchrun_command(3, ["train", "--nproc", "3", "--recipe", "mnist-fast"])
    assert cmd[:3] == [sys.executable, "-m", "torch.distributed.run"] and "--nproc-per-node=3" in cmd
    assert cmd[-5:] == ["-m", "smallvision", "train", "--recipe", "mnist-fast"]


def test_print_config_records_the_arguments_main_was_given(monkeypatch, capsys):
    from smallvision.cli.main import main

    monkeypatch.setattr(sys, "argv", ["pytest", "something", "else"])
    try:
        main(["print-config", "--set", "lr=0.5"])
    except SystemExit as e:
        assert e.code == 0
    assert 'description = "settings of smallvision print-config --set lr=0.5"' in capsys.readouterr().out
