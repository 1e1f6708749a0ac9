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
    for _ in range(2):  # the second time too: a refusal is never kept as an answer
        with pytest.raises(errors.AddressError, match=why.replace("(", r"\(")):
            address.parse(text)


def test_parse_keeps_answers_within_a_bound():
    address._PARSED.clear()  # noqa: SLF001
    first = address.parse("<kept@x.org>")
    assert address.parse("<kept@x.org>") is first
    for i in range(address.PARSED_KEPT + 5):
        assert str(address.parse(f"u{i}@x.org")) == f"u{i}@x.org"
    assert len(address._PARSED) <= address.PARSED_KEPT  # noqa: SLF001


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


# -- properties (Hypothesis): only typed errors; parse -> format -> parse is stable ------------------

from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

ATEXT = "abcxyzABZ019!#$%&'*+-/=?^_`{|}~"
# examples: the Hypothesis profile (a few hundred in the suite; make fuzz runs many more)
PROPS = settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _quoted(draw_text: str) -> str:
    return '"' + draw_text.replace("\\", "\\\\").replace('"', '\\"') + '"'


LABEL = st.text(alphabet="abcz019-_", min_size=1, max_size=8).filter(lambda s: s[0] != "-" and s[-1] != "-")
DOMAIN = st.one_of(
    st.sampled_from(["test.example", "TEST.Example.", "localhost", "[127.0.0.1]", "[IPv6:::1]", "elsewhere.example",
                     "[192.0.2.1]", "bücher.example", "xn--bcher-kva.example", "a..b", ".x", "[999.0.0.1]"]),
    st.lists(LABEL, min_size=1, max_size=4).map(".".join))
ATOM = st.text(alphabet=ATEXT, min_size=1, max_size=10)
QUOTED = st.text(alphabet=st.characters(blacklist_characters="\r\n\x00", max_codepoint=0x2FF), max_size=14).map(_quoted)
LOCAL = st.one_of(
    ATOM, QUOTED, st.tuples(ATOM, DOMAIN).map("%".join), st.tuples(DOMAIN, ATOM).map("!".join),
    st.tuples(ATOM, DOMAIN).map(lambda t: _quoted(f"{t[0]}@{t[1]}")),
    st.tuples(ATOM, DOMAIN).map(lambda t: f"{t[0]}\\@{t[1]}"),
    st.lists(st.one_of(ATOM, QUOTED), min_size=2, max_size=3).map(".".join))


@st.composite
def address_forms(draw):
    """Envelope and header address forms: local parts of every kind, domains local and not,
    literals, source routes, comments, display names, brackets."""
    text = draw(LOCAL)
    if draw(st.booleans()):
        text += "@" + draw(DOMAIN)
    if draw(st.booleans()):
        route = ",".join("@" + d for d in draw(st.lists(DOMAIN, min_size=1, max_size=2)))
        text = f"<{route}:{text}>"
    elif draw(st.booleans()):
        text = draw(st.sampled_from(["", "Name ", '"A, B" '])) + f"<{text}>"
    if draw(st.booleans()):
        text = draw(st.sampled_from(["(c) ", "", " (x(y)) "])) + text + draw(st.sampled_from([" (z)", ""]))
    return text


def _parse_or_typed(text: str):
    try:
        return address.parse(text)
    except errors.AddressError as exc:
        assert exc.code == 553 and exc.status[:2] == "5." and exc.text
        return None


@PROPS
@given(st.text(max_size=120))
def test_any_text_parses_or_gives_a_typed_error(text):
    _parse_or_typed(text)
    try:
        address.header_addresses(text)
    except errors.AddressError:
        pass


@PROPS
@given(address_forms())
def test_round_trip(text):
    a = _parse_or_typed(text)
    if a is None:
        return
    assert address.parse(str(a)) == a
    assert address.parse(a.bracketed) == a
    assert str(address.parse(str(a))) == str(a)
    if a.domain:
        assert address.parse(f"Some Name <{a}> (comment)") == a


def test_length_limits_as_prescan():
    with pytest.raises(errors.AddressError, match="prescan: token too long") as exc:
        address.parse("<" + "a" * 300 + "@test.example>")  # captured/smtp_errors.txt: 553 5.1.0
    assert exc.value.status == "5.1.0"
    with pytest.raises(errors.AddressError, match="Address too long") as exc:
        address.parse(".".join(["a" * 60] * 5) + "@test.example")
    assert exc.value.status == "5.1.1"
    assert address.parse("c" * 70 + "@test.example").local == "c" * 70  # Sendmail takes it (then User unknown)
