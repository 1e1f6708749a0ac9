"""mail.local and smrsh (mta/cli/local.py): the helper programs at sendmail-bin's paths."""

from __future__ import annotations

import os
import subprocess

import pytest

from mta.cli import local
from tests.conftest import BIN


@pytest.fixture
def smrsh_dir(tmp_path):
    d = tmp_path / "smrsh"
    d.mkdir()
    (d / "procmail").symlink_to("/bin/cat")
    return d


def test_smrsh_maps_programs_into_its_directory(smrsh_dir):
    assert local.smrsh_command("/usr/bin/procmail -a x", str(smrsh_dir)) == f"{smrsh_dir}/procmail -a x"
    assert local.smrsh_command("exec procmail", str(smrsh_dir)) == f"exec {smrsh_dir}/procmail"
    assert local.smrsh_command("procmail | procmail", str(smrsh_dir)) == f"{smrsh_dir}/procmail | {smrsh_dir}/procmail"


@pytest.mark.parametrize("command,reason", [
    ("rm -rf /", "rm not available for sendmail programs"),
    ("procmail; rm x", "cannot use ; in command"),
    ("procmail $(id)", "cannot use $ in command"),
    ("procmail & rm", "cannot use & in command"),
    ("procmail > /etc/passwd", "cannot use > in command"),
])
def test_smrsh_refuses(smrsh_dir, command, reason):
    with pytest.raises(ValueError, match=reason.replace("$", r"\$")):
        local.smrsh_command(command, str(smrsh_dir))


def test_smrsh_command_line_refusal_exits_69():
    r = subprocess.run([str(BIN / "smrsh"), "-c", "nosuchprogram-xyz"], capture_output=True, text=True)
    assert r.returncode == 69 and "nosuchprogram-xyz not available for sendmail programs" in r.stderr
    assert subprocess.run([str(BIN / "smrsh")], capture_output=True).returncode == 64


def test_mail_local_args():
    assert local._mail_local_args(["-l", "-f", "bob@x", "-d", "alice", "carol"]) == ("bob@x", ["alice", "carol"])
    with pytest.raises(ValueError):
        local._mail_local_args(["-Z", "alice"])


@pytest.mark.skipif(os.geteuid() != 0, reason="mail.local writes /var/mail as root")
def test_mail_local_unknown_user_is_67():
    r = subprocess.run([str(BIN / "mail.local"), "-l", "-d", "no-such-user-xyz"], input=b"Subject: x\n\nx\n",
                       capture_output=True)
    assert r.returncode == 67 and b"unknown user" in r.stderr
