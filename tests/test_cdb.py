import pytest

from mta import cdb


def test_roundtrip(tmp_path):
    items = [(f"k{i}".encode(), f"v{i}".encode() * (i % 7)) for i in range(3000)]
    cdb.write(str(tmp_path / "m.cdb"), items)
    r = cdb.Reader(str(tmp_path / "m.cdb"))
    for k, v in items[::97]:
        assert r.get(k) == v
    assert r.get(b"absent") is None
    assert list(r.items()) == items


def test_truncated_file_refused(tmp_path):
    p = tmp_path / "bad.cdb"
    p.write_bytes(b"short")
    with pytest.raises(ValueError):
        cdb.Reader(str(p))
