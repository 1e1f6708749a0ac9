"""The seed's backup-MX story in the lab (scripts/lab_story.backup_mx): st5 and st2 down, mail for
st5 from outside waits on st3 (access To:st5.example.test RELAY), st5 comes back, st3's queue
run delivers it; postmaster reaches root; relaying elsewhere through st3 is refused."""

from __future__ import annotations

import re

import pytest

from tests.lab.conftest import lab_net, lab_setup, lab_story, make_lab


@pytest.fixture(params=["mailertable", "mx"])
def story(request):
    """mailertable: st3 routes st5.example.test to smtp:mail.st5.example.test; mx: by MX records
    alone, where st3 must drop itself and every host at or above its own preference (RFC 5321 5.1)."""
    topo = lab_setup.topology(mailertable=request.param == "mailertable")
    yield from make_lab(topo, up=("st3",))


def test_backup_queues_then_delivers(story):
    out = lab_story.backup_mx(story)
    lab = story.lab
    deferred = r"\(Deferred: Connection refused by mail\.st[52]\.example\.test\)\n\s+<mtaalice@st5\.example\.test>"
    assert re.search(deferred, out["mailq"]), out["mailq"]
    assert "Total requests: 1" in out["mailq"]
    received = re.findall(r"^Received: from (\S+).*\n\s+by (\S+)", out["mbox"], re.M)
    assert ("mail.st3.example.test", "mail.st5.example.test") in received, out["mbox"]
    assert ("mail.outside.example.test", "mail.st3.example.test") in received, out["mbox"]
    assert "Subject: for the postmaster" in out["root"]
    assert "550 5.7.1 <someone@elsewhere.example.test>... Relaying denied" in out["relay"]
    st3, st5, outside = lab["st3"].log(), lab["st5"].log(), lab["outside"].log()
    to_st5 = r"st3 sm-mta\[\d+\]: \w+: to=<mtaalice@st5.example.test>, "
    assert re.search(to_st5 + ".*stat=Deferred: Connection refused", st3)
    assert re.search(to_st5 + r".*relay=mail.st5.example.test. \[10.251.11.5\], dsn=2.0.0, stat=Sent", st3)
    assert "ruleset=check_rcpt, arg1=<someone@elsewhere.example.test>, relay=mail.outside.example.test" in st3
    assert re.search(r"relay=mail.st3.example.test. \[10.251.11.3\], dsn=2.0.0, stat=Sent", outside)
    assert re.search(r"st5 sm-mta\[\d+\]: \w+: to=<mtaalice@st5.example.test>, .*mailer=local, .*stat=Sent", st5)
    assert re.search(r"to=root, .*mailer=local|to=<postmaster@st5.example.test>.*mailer=local", st5), st5
    assert "sm-mta" not in lab["st2"].log()  # down all along


@pytest.fixture
def backup_only():
    yield from make_lab(lab_setup.topology(), up=("st3",))


def send_to_st3(lab, subject: str) -> None:
    r = lab["outside"].sh("swaks", "--server", "mail.st3.example.test", "--from", lab_story.FROM,
                          "--to", "mtaalice@st5.example.test", "--h-Subject", subject)
    assert r.returncode == 0, r.stdout


def test_backup_daemon_tries_the_primary_again_for_new_mail(backup_only):
    """After st5 is back, the next message st3's daemon accepts for st5 goes there at once."""
    lab = backup_only.lab
    send_to_st3(lab, "while st5 is down")
    assert lab_net.wait_for(lambda: "stat=Deferred" in lab["st3"].log())
    lab["st5"].start()
    send_to_st3(lab, "after st5 is back")
    assert lab_net.wait_for(lambda: "Subject: after st5 is back" in lab["st5"].mbox("mtaalice"), 15), lab["st3"].log()
