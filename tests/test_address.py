import pytest

from mta import address, errors


@pytest.mark.parametrize("text,want", [
    ("alice", "alice"), ("<alice@x.org>", "alice@x.org"), ("Alice <alice>", "alice"),
    ("(c) bob@x.org (d)", "bob@x.org"), ("carol@[127.0.0.2]", "carol@[127.0.0.2]"),
    ('"a b"@x.org', '"a b"@x.org'), ("<@route:u@x.org>", "u@x.org"), ("<>", ""),
])
def test_parse(text, want):
    assert str(address.parse(text)) == want


@pytest.mark.parametrize("text,why", [
    ("<<bad@@", "Unbalanced '<'"), ("bad>", "Unbalanced '>'"), ("(x", "Unbalanced '('"),
    ('"x', "Unbalanced '\"'"), ("a@b@c", "Invalid route address"), ("a@", "Hostname required"),
    ("a\r\nRCPT TO:<x>", "Invalid character"), ("a\x00b", "Invalid character"),
])
def test_parse_errors(text, why):
    with pytest.raises(errors.AddressError, match=why.replace("(", r"\(")):
        address.parse(text)


def test_split_list_groups_and_quotes():
    assert address.split_list('Alice <a@x>, bob, undisclosed-recipients:;, "Doe, J" <j@x>') == [
        "Alice <a@x>", "bob", '"Doe, J" <j@x>']
    assert address.split_list(":include:/x, y", groups=False) == [":include:/x", "y"]


def test_header_addresses():
    assert [str(a) for a in address.header_addresses("A <a@x>, (c) b")] == ["a@x", "b"]


@pytest.mark.parametrize("text,local,domain", [
    ('"v@elsewhere.example"', '"v@elsewhere.example"', ""),
    ('"someone@elsewhere.example"@our.domain', '"someone@elsewhere.example"', "our.domain"),
    ('<"a b@c"@x.org>', '"a b@c"', "x.org"),
])
def test_quoted_local_part_is_one_local_part(text, local, domain):
    a = address.parse(text)
    assert (a.local, a.domain) == (local, domain)
