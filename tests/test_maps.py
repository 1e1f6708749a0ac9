"""K-line maps over real files built by our makemap: types, flags, failures, rebuilds."""

import multiprocessing
import os
import time

import pytest

from mta import maps
from mta.config import MapDecl

from .conftest import makemap

TYPES = ["hash", "btree", "dbm", "cdb"]


def build(tmp_path, mtype, text: bytes, *flags: str, name="m"):
    path = str(tmp_path / name)
    r = makemap(*flags, mtype, path, stdin=text)
    assert r.returncode == 0, r.stderr
    return path


@pytest.mark.parametrize("mtype", TYPES + ["implicit"])
def test_types_and_case_folding(tmp_path, mtype):
    path = build(tmp_path, mtype, b"Example.COM\tRELAY\nuser@x.org REJECT\n")
    m = maps.Map(MapDecl("access", mtype, [], path))
    assert m.lookup("example.com") == "RELAY" and m.lookup("EXAMPLE.com") == "RELAY"
    assert m.lookup("USER@X.ORG") == "REJECT" and m.lookup("nope") is None


def test_flags_N_f_a_m(tmp_path):
    path = build(tmp_path, "hash", b"Key value\n", "-N", "-f")
    assert maps.Map(MapDecl("m", "hash", ["-N", "-f"], path)).lookup("Key") == "value"
    assert maps.Map(MapDecl("m", "hash", ["-f"], path)).lookup("Key") is None  # stored with NUL
    assert maps.Map(MapDecl("m", "hash", ["-O", "-f"], path)).lookup("Key") == "value"
    assert maps.Map(MapDecl("m", "hash", ["-N"], path)).lookup("Key") is None  # folded key absent
    assert maps.Map(MapDecl("m", "hash", ["-N", "-f", "-a.found"], path)).lookup("Key") == "value.found"
    assert maps.Map(MapDecl("m", "hash", ["-N", "-f", "-m"], path)).lookup("Key") == "Key"


def test_text_map_columns(tmp_path):
    p = tmp_path / "passwd"
    p.write_text("alice:x:1001:1001::/home/alice:/bin/sh\n")
    m = maps.Map(MapDecl("pw", "text", ["-k0", "-v5", "-z:"], str(p)))
    assert m.lookup("ALICE") == "/home/alice"


def test_missing_optional_and_required(tmp_path):
    assert maps.Map(MapDecl("m", "hash", ["-o"], str(tmp_path / "none"))).lookup("x") is None
    with pytest.raises(maps.MapTempFail):
        maps.Map(MapDecl("m", "hash", [], str(tmp_path / "none"))).lookup("x")


@pytest.mark.parametrize("junk", [b"\x00garbage" * 100, b"", b"x"])
def test_corrupt_map_is_tempfail(tmp_path, junk):
    (tmp_path / "m.db").write_bytes(junk)
    with pytest.raises(maps.MapTempFail):
        maps.Map(MapDecl("m", "hash", ["-o"], str(tmp_path / "m"))).lookup("x")


def test_wrong_type_is_tempfail(tmp_path):
    path = build(tmp_path, "btree", b"a b\n")
    with pytest.raises(maps.MapTempFail):
        maps.Map(MapDecl("m", "hash", [], path)).lookup("a")


def test_stale_database_logged(tmp_path):
    class Log:
        lines = []

        def line(self, text, qid=""):
            self.lines.append(text)

    src = tmp_path / "access"
    src.write_text("a b\n")
    build(tmp_path, "hash", b"a b\n", name="access")
    later = time.time() + 10
    os.utime(src, (later, later))
    log = Log()
    maps.Map(MapDecl("access", "hash", [], str(src)), log).lookup("a")
    assert log.lines == [f"access database {src} out of date"]


def test_reopens_after_rebuild(tmp_path, monkeypatch):
    monkeypatch.setattr(maps, "RECHECK", 0.3)
    path = build(tmp_path, "hash", b"a 1\n")
    m = maps.Map(MapDecl("m", "hash", [], path))
    assert m.lookup("a") == "1" and m.lookup("b") is None
    build(tmp_path, "hash", b"a 2\nb 3\n")
    time.sleep(0.35)  # a rebuilt map is seen within RECHECK, its answers asked again
    assert m.lookup("a") == "2" and m.lookup("b") == "3"


def test_answers_are_kept_between_rechecks(tmp_path):
    path = build(tmp_path, "hash", b"a 1\n")
    m = maps.Map(MapDecl("m", "hash", [], path))
    assert m.lookup("a") == "1" and m.lookup("zz") is None
    os.unlink(path + ".db")  # within RECHECK neither the file nor the answer is looked at again
    assert m.lookup("a") == "1" and m.lookup("zz") is None


def _reader(mtype, path, stop, misses, lookups):
    m = maps.Map(MapDecl("m", mtype, [], path))
    n = bad = 0
    while not os.path.exists(stop):
        try:
            if m.lookup("both") != "yes":
                bad += 1
        except maps.MapTempFail:
            bad += 1
        n += 1
    misses.put(bad)
    lookups.put(n)


@pytest.mark.parametrize("mtype,rebuilds", [("hash", 1000), ("btree", 300), ("dbm", 300), ("cdb", 300)])
def test_rebuilds_never_hide_a_key(tmp_path, mtype, rebuilds):
    """A map rebuilt while 4 processes look a key up that every version holds: never a miss."""
    path = str(tmp_path / "m")
    versions = [b"both yes\n" + b"".join(b"k%d v%d\n" % (i, v) for i in range(50 + v * 7 % 400))
                for v in range(7)]
    maps.write(mtype, path, [tuple(ln.split(b" ", 1)) for ln in versions[0].splitlines()])
    stop = str(tmp_path / "stop")
    misses, lookups = multiprocessing.Queue(), multiprocessing.Queue()
    procs = [multiprocessing.Process(target=_reader, args=(mtype, path, stop, misses, lookups)) for _ in range(4)]
    for p in procs:
        p.start()
    for n in range(rebuilds):
        maps.write(mtype, path, [tuple(ln.split(b" ", 1)) for ln in versions[n % 7].splitlines()])
    open(stop, "w").close()
    for p in procs:
        p.join(30)
    assert [misses.get() for _ in procs] == [0, 0, 0, 0]
    assert all(lookups.get() > 0 for _ in procs)
