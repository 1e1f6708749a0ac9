"""MinFreeBlocks and SIZE against the queue's free space, checked at MAIL (srvrsmtp.c enoughdiskspace)."""

import os

import pytest

from mta import config
from mta.context import Context
from mta.policy import Client
from mta.smtp.session import Session
from tests.test_smtp_session import settle


def _ctx(tmp_path, extra: str = ""):
    cf = tmp_path / "sendmail.cf"
    cf.write_text(f"Djmx.test.example\nCwlocalhost\nO LogFile={tmp_path}/log\nO QueueDirectory={tmp_path}\n{extra}")
    return Context.create(config.load(str(cf)))


def _mail(ctx, arg: str) -> str:
    s = Session(ctx, Client("192.0.2.7", "client.example"))
    out = settle(ctx, s, s.receive(f"EHLO c.example\r\nMAIL FROM:<a@example.org>{arg}\r\n".encode()))
    return b"".join(out).decode().splitlines()[-1]


def test_min_free_blocks_defaults_to_sendmails_100(tmp_path):
    assert _ctx(tmp_path).cfg["MinFreeBlocks"] == 100


def test_too_few_free_blocks_is_452_at_mail(tmp_path):
    free = os.statvfs(tmp_path).f_bavail
    ctx = _ctx(tmp_path, f"O MinFreeBlocks={free + 1000}\n")
    assert _mail(ctx, "") == "452 4.4.5 Insufficient disk space; try again later"
    log = (tmp_path / "log").read_text()
    assert f"low on space (client.example needs 0 bytes + {free + 1000} blocks in {tmp_path}), max avail: " in log


@pytest.mark.parametrize("factor,want", [(2, "452 4.4.5 Insufficient disk space; try again later"),
                                         (0, "250 2.1.0 <a@example.org>... Sender ok")])
def test_size_beyond_free_space_is_452_at_mail(tmp_path, factor, want):
    vfs = os.statvfs(tmp_path)
    ctx = _ctx(tmp_path, "O MinFreeBlocks=0\n")
    assert _mail(ctx, f" SIZE={factor * vfs.f_bavail * vfs.f_frsize}") == want
