"""makemap's input reader and builder: any bytes give a database or makemap's errors (exit 65),
never an exception; what was built reads back.  Properties (Hypothesis); make fuzz runs more."""

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mta import errors, makemap, maps

LINE = st.one_of(
    st.sampled_from([b"", b"#c", b" lead", b"key value", b"KEY value2", b"key", b"k\tv", b"k:v", b"\x00 \x00",
                     b"x" * 1100, b"a" * 1023 + b" v", b"\r", b"k  v  w"]),
    st.binary(max_size=24))
PROPS = settings(deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])


@PROPS
@given(lines=st.lists(LINE, max_size=20), sep=st.sampled_from(["", ":", "\t"]), mtype=st.sampled_from(
    ["hash", "btree", "dbm", "cdb"]), flags=st.fixed_dictionaries(
    {"fold": st.booleans(), "nul": st.booleans(), "replace": st.booleans(), "dups": st.booleans(),
     "empty": st.booleans()}))
def test_fuzz_makemap_input(tmp_path_factory, capsys, lines, sep, mtype, flags):
    path = str(tmp_path_factory.mktemp("map") / "m")
    req = makemap.Request(type=mtype, path=path, sep=sep, **flags)
    data = b"\n".join(lines)
    items, status = makemap.parse_lines(req, data)
    assert status in (errors.EX_OK, errors.EX_DATAERR)
    code = makemap.run(req, stdin=data)
    capsys.readouterr()
    assert code in (errors.EX_OK, errors.EX_DATAERR), code
    if code == errors.EX_OK and not flags["dups"]:
        reader = maps.open_reader(mtype, path)
        for key, value in items:
            assert reader.get(key) == value
