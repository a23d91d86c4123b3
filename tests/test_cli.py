"""The command line is the contract every later feature plugs into."""
import subprocess
import sys

from her2core import cli
from her2core.errors import MaskError


def test_help_lists_every_built_command():
    out = subprocess.run([sys.executable, "-m", "her2core", "--help"],
                         capture_output=True, text=True, check=True).stdout
    assert "not a medical device" in " ".join(out.split())
    for mod in cli._load_commands():
        assert mod.NAME in out


def test_user_error_is_one_line_and_exit_2(monkeypatch, capsys):
    class Boom:
        NAME, HELP = "boom", "raises a user error"

        @staticmethod
        def add_arguments(p):
            pass

        @staticmethod
        def run(args):
            raise MaskError("mask is empty", case_id="C001", file="cases/C001/mask.nii.gz")

    monkeypatch.setattr(cli, "_load_commands", lambda: [Boom])
    assert cli.main(["boom"]) == 2
    err = capsys.readouterr().err
    assert err == "error: case C001, file cases/C001/mask.nii.gz: mask is empty\n"
