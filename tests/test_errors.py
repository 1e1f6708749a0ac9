from mta import errors


def test_classes_carry_sysexits_and_replies():
    e = errors.NoUser()
    assert (e.exitcode, e.code, e.status, e.text) == (67, 550, "5.1.1", "User unknown")
    assert e.reply() == "550 5.1.1 User unknown"
    assert not e.temporary
    t = errors.TempFail("Deferred: Connection refused by [127.0.0.1]", status="4.4.1")
    assert t.temporary and t.exitcode == 75 and t.code == 450


def test_for_exitcode_maps_each_code():
    for code in errors.SYSEXITS:
        assert errors.for_exitcode(code).exitcode == code
    assert errors.for_exitcode(12345).exitcode == errors.EX_SOFTWARE


def test_address_error_is_553():
    e = errors.AddressError("Unbalanced '<'")
    assert e.reply() == "553 5.1.3 Unbalanced '<'" and e.exitcode == 64
