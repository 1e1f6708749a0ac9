"""Berkeley DB hash and btree files: our writer and reader, and Debian's libdb on the same files."""

import functools
import shutil
import subprocess

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mta import bdb

from .conftest import DATA, debian_makemap

ITEMS = [(b"key%d" % i, b"v%d" % i * (i % 40)) for i in range(5000)] + [
    (b"big", b"B" * 9000), (b"k" * 3000, b"long key"), (b"", b"empty key"), (b"empty", b""),
    (b"key1", b"prefix"), (b"key10", b"longer with same prefix")]


@pytest.mark.parametrize("kind", ["hash", "btree"])
def test_roundtrip_with_overflow_items(tmp_path, kind):
    path = str(tmp_path / f"m-{kind}.db")
    getattr(bdb, f"write_{kind}")(path, ITEMS)
    r = bdb.Reader(path)
    want = dict(ITEMS)
    assert r.kind == kind
    assert sorted(r.items()) == sorted(want.items())
    for k, v in want.items():
        assert r.get(k) == v
    assert r.get(b"absent") is None


def test_btree_order_and_duplicates(tmp_path):
    path = str(tmp_path / "d.db")
    bdb.write_btree(path, [(b"b", b"2"), (b"a", b"1"), (b"b", b"3"), (b"c", b"4")], dups=True)
    assert list(bdb.Reader(path).items()) == [(b"a", b"1"), (b"b", b"2"), (b"b", b"3"), (b"c", b"4")]


def test_reads_debian_sendmail_files():
    access = bdb.Reader(str(DATA / "debian" / "access.db"))
    assert access.kind == "hash"
    assert access.get(b"connect:127") == b"RELAY" and access.get(b"spam:spam@") == b"FRIEND"
    aliases = bdb.Reader(str(DATA / "debian" / "aliases.db"))
    assert list(aliases.items()) == [(b"@\0", b"@\0")]


@pytest.mark.parametrize("data", [b"", b"x" * 100, b"\0" * 8192, b"garbage" * 600])
def test_not_a_database(tmp_path, data):
    p = tmp_path / "bad.db"
    p.write_bytes(data)
    with pytest.raises(bdb.BadFile):
        bdb.Reader(str(p))


def test_truncated_database(tmp_path):
    path = tmp_path / "t.db"
    bdb.write_hash(str(path), ITEMS)
    path.write_bytes(path.read_bytes()[:4096 * 3])
    r = bdb.Reader(str(path))
    with pytest.raises(bdb.BadFile):
        for k, _v in ITEMS:
            r.get(k)


@pytest.mark.skipif(not shutil.which("db5.3_verify"), reason="needs db5.3-util")
@pytest.mark.parametrize("kind", ["hash", "btree"])
def test_libdb_verifies_and_dumps_ours(tmp_path, kind):
    path = str(tmp_path / f"v-{kind}.db")
    getattr(bdb, f"write_{kind}")(path, ITEMS)
    v = subprocess.run(["db5.3_verify", path], capture_output=True, text=True)
    assert v.returncode == 0 and "key1:" not in v.stdout + v.stderr, v.stdout + v.stderr
    dump = subprocess.run(["db5.3_dump", "-p", path], capture_output=True, text=True).stdout
    assert f"type={kind}" in dump and " big\n" in dump


@pytest.mark.parametrize("kind", ["hash", "btree"])
def test_debian_makemap_reads_ours_and_we_read_its(tmp_path, kind):
    src = b"".join(b"user%d@example.org\tREJECT %d\n" % (i, i) for i in range(3000))
    ours = str(tmp_path / "ours")
    getattr(bdb, f"write_{kind}")(ours + ".db", [tuple(line.split(b"\t")) for line in src.splitlines()])
    r = debian_makemap("-u", kind, ours)
    assert r.returncode == 0, r.stderr
    assert sorted(r.stdout.splitlines()) == sorted(src.splitlines())
    theirs = str(tmp_path / "theirs")
    assert debian_makemap(kind, theirs, stdin=src).returncode == 0
    got = bdb.Reader(theirs + ".db")
    assert sorted(got.items()) == sorted(tuple(line.split(b"\t")) for line in src.splitlines())
    assert got.get(b"user2999@example.org") == b"REJECT 2999"


def libdb_hash_order(a: bytes, b: bytes) -> int:
    """libdb's order on a sorted hash page (__ham_getindex_sorted's compare): bytewise over the
    shorter length, and when that is equal the longer key first."""
    m = min(len(a), len(b))
    if a[:m] != b[:m]:
        return -1 if a[:m] < b[:m] else 1
    return len(b) - len(a)


KEYS = st.lists(st.binary(max_size=6).map(lambda b: b.replace(b"\x02", b"\xff")), max_size=30)


@given(KEYS)
def test_hash_pages_sort_and_search_in_libdbs_order(keys):
    assert sorted(keys, key=bdb.hash_page_key) == sorted(keys, key=functools.cmp_to_key(libdb_hash_order))
    for a in keys:
        for b in keys:
            assert (bdb._hash_order(a, b) > 0) - (bdb._hash_order(a, b) < 0) == \
                (libdb_hash_order(a, b) > 0) - (libdb_hash_order(a, b) < 0)


@given(st.integers(min_value=1, max_value=1 << 40))
def test_log2_is_libdbs(n):
    i, limit = 0, 1  # __db_log2
    while limit < n:
        limit <<= 1
        i += 1
    assert bdb.log2(n) == i
