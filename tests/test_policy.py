"""Who may send what through us: relaying, locality and sender checks (mta/policy.py)."""

import pytest

from mta import address, config
from mta.context import Context
from mta.policy import Client, Policy

OUTSIDE = Client("192.0.2.7", "client.example")
INSIDE = Client("127.0.0.1", "localhost")


@pytest.fixture
def ctx(tmp_path):
    cf = tmp_path / "sendmail.cf"
    (tmp_path / "aliases").write_text("team: root\n")
    cf.write_text(f"Djmx.test.example\nCwlocalhost test.example\nO AliasFile={tmp_path}/aliases\n"
                  f"O LogFile={tmp_path}/log\nO QueueDirectory={tmp_path}\n")
    return Context.create(config.load(str(cf)))


def rcpt(ctx, client, text):
    """The RCPT verdict as the session gives it: None (accepted) or 'code status text'."""
    r = Policy(ctx).rcpt(client, address.parse(text), str(address.parse(text)))
    return None if r is None else f"{r.code} {r.status} {r.text}"


def test_quoted_local_part_does_not_relay(ctx):
    # the open relay of issue 8: a quoted local part is one local part, never an address again
    assert rcpt(ctx, OUTSIDE, '"someone@elsewhere.example"@test.example') == "550 5.7.1 Relaying denied"
    assert rcpt(ctx, OUTSIDE, '"someone@elsewhere.example"') == "550 5.7.1 Relaying denied"
    assert rcpt(ctx, INSIDE, '"someone@elsewhere.example"@test.example') == "550 5.1.1 User unknown"
