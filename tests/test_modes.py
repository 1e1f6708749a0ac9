"""Which configuration each mode reads, as Sendmail (Debian's MSP/MTA split) chooses it."""

import pytest

from mta import config, modes
from mta.cli.sendmail import UsageError, parse


@pytest.mark.parametrize("argv,want", [
    (["alice"], config.DEFAULT_SUBMIT_CF),
    (["-t"], config.DEFAULT_SUBMIT_CF),
    (["-bs"], config.DEFAULT_SUBMIT_CF),
    (["-Am", "alice"], config.DEFAULT_CF),
    (["-Am", "-bs"], config.DEFAULT_CF),
    (["-bp"], config.DEFAULT_CF),
    (["-bv", "alice"], config.DEFAULT_CF),
    (["-bd"], config.DEFAULT_CF),
    (["-q"], config.DEFAULT_CF),
    (["-Ac", "-q"], config.DEFAULT_SUBMIT_CF),
    (["-C", "/x/my.cf", "alice"], "/x/my.cf"),
])
def test_choose_cf(argv, want):
    assert modes.choose_cf(parse(argv)) == want


def test_getopt_forms():
    req = parse(["-oi", "-odq", "-O", "LogLevel=9", "-fbob@example.org", "-F", "Bob B", "-qRexample", "-q!Sroot",
                 "--", "-x"])
    assert req.overrides == [("i", ""), ("d", "q"), ("LogLevel", "9")]
    assert (req.sender, req.full_name) == ("bob@example.org", "Bob B")
    assert req.queue_select == [("R", "example", False), ("S", "root", True)]
    assert req.recipients == ["-x"]
    with pytest.raises(UsageError, match="illegal option -- Z"):
        parse(["-Z"])
    with pytest.raises(UsageError, match="option requires an argument -- X"):
        parse(["-X"])
