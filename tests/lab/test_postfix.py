"""Debian's Postfix in the lab's roles (scripts/lab_story.postfix_roles): Postfix on st2 as the backup
MX of our st5, ours on st3 as the backup MX of Postfix's st2; deferral, flush, relay refused."""

from __future__ import annotations

import re

import pytest

from tests.lab.conftest import lab_setup, lab_story, make_lab


@pytest.fixture
def story():
    yield from make_lab(lab_setup.topology(st2="postfix"), up=("st2",))


def test_postfix_and_ours_back_each_other_up(story):
    out = lab_story.postfix_roles(story)
    lab = story.lab
    assert re.search(r"connect to mail\.st5\.example\.test\[10\.251\.11\.5\]:25: Connection refused", out["postqueue"])
    assert "Subject: kept by Postfix" in out["mbox5"]
    assert re.search(r"^Received: from mail\.st2\.example\.test .*\n\s+by mail\.st5\.example\.test", out["mbox5"], re.M)
    assert "(Deferred: Connection refused by mail.st2.example.test)" in out["mailq"]
    assert "Subject: kept by sendmail-py" in out["mbox2"]
    assert re.search(r"^Received: from mail\.st3\.example\.test .*\n\s+by mail\.st2\.example\.test", out["mbox2"], re.M)
    assert "554 5.7.1 <someone@elsewhere.example.test>: Relay access denied" in out["relay"]
    st2 = lab["st2"].log()
    assert re.search(r"postfix/(relay/)?smtp\[\d+\]: \w+: to=<mtaalice@st5.example.test>, relay=mail.st5.example.test"
                     r"\[10.251.11.5\]:25, .*status=sent", st2), st2
    assert re.search(r"postfix/local\[\d+\]: \w+: to=<mtabob@st2.example.test>, .*status=sent", st2), st2
    assert re.search(r"st3 sm-mta\[\d+\]: \w+: to=<mtabob@st2.example.test>, .*relay=mail.st2.example.test. "
                     r"\[10.251.11.2\], dsn=2.0.0, stat=Sent", lab["st3"].log())
