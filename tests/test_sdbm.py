from mta import sdbm


def test_roundtrip(tmp_path):
    items = [(b"k%d" % i, b"v" * (i % 200)) for i in range(3000)]
    sdbm.write(str(tmp_path / "m"), items)
    assert (tmp_path / "m.dir").exists() and (tmp_path / "m.pag").exists()
    r = sdbm.Reader(str(tmp_path / "m"))
    assert all(r.get(k) == v for k, v in items) and r.get(b"nope") is None
    assert sorted(r.items()) == sorted(items)


def test_rebuild_with_other_depth_between_renames(tmp_path):
    """A reader that sees the new .pag with the old .dir still finds every key."""
    big = [(b"k%d" % i, b"x" * 100) for i in range(2000)]
    sdbm.write(str(tmp_path / "m"), [(b"k1", b"small")])
    old_dir = (tmp_path / "m.dir").read_bytes()
    sdbm.write(str(tmp_path / "m"), big)
    (tmp_path / "m.dir").write_bytes(old_dir)
    r = sdbm.Reader(str(tmp_path / "m"))
    assert all(r.get(k) == v for k, v in big)
