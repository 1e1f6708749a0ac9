import pytest

from mta import config, errors, options

from .conftest import DATA


def test_debian_sendmail_cf_loads():
    cfg = config.load(str(DATA / "debian" / "sendmail.cf"))
    assert cfg["QueueDirectory"] == "/var/spool/mqueue"
    assert cfg["AliasFile"] == "/etc/mail/aliases"
    assert cfg["DeliveryMode"] == "b"
    assert cfg["QueueFileMode"] == 0o640
    assert cfg["Timeout.queuewarn"] == 4 * 3600
    assert cfg.macros["Z"] == "8.17.1.9/Debian-2+deb12u2"
    assert "localhost" in cfg.klass("w")
    assert cfg.maps["access"].type == "hash" and cfg.maps["access"].path == "/etc/mail/access"
    assert cfg.maps["access"].flags == ["-T<TMPF>"]
    assert set(cfg.mailers) >= {"local", "prog", "smtp", "esmtp", "relay"}
    assert cfg.mailers["local"].flags == "lsDFMAw5:/|@qPn9S"
    assert cfg.mailers["relay"].fields["L"] == "2040"
    assert cfg.ignored_rules > 100  # S/R lines counted, not run
    assert len(cfg.daemon_ports) == 2 and "Name=MSP-v4" in cfg.daemon_ports[1]
    assert "authwarnings" in cfg["PrivacyOptions"]
    assert not cfg.is_msp


def test_debian_submit_cf_is_msp():
    cfg = config.load(str(DATA / "debian" / "submit.cf"))
    assert cfg.is_msp and cfg.macros["MTAHost"] == "[127.0.0.1]"
    assert cfg["QueueDirectory"] == "/var/spool/mqueue-client"
    assert cfg["DeliveryMode"] == "i"
    assert cfg.macros["Z"] == "8.17.1.9/Submit"


def test_overrides_short_and_long(tmp_path):
    cf = tmp_path / "x.cf"
    cf.write_text("OA/etc/aliases\nO DeliveryMode=i\n")
    cfg = config.load(str(cf), [("d", "q"), ("AliasFile", "/x"), ("Timeout.queuereturn", "1h30m")])
    assert cfg["DeliveryMode"] == "q" and cfg["AliasFile"] == "/x"
    assert cfg["Timeout.queuereturn"] == 5400


def test_unknown_option_on_command_line(tmp_path):
    cf = tmp_path / "x.cf"
    cf.write_text("O NoSuchThing=1\n")  # tolerated in a file
    config.load(str(cf))
    with pytest.raises(errors.SoftwareError, match="readcf: unknown option name NoSuchOption"):
        config.load(str(cf), [("NoSuchOption", "1")])


def test_unreadable_config_is_config_error(tmp_path):
    with pytest.raises(errors.ConfigError) as exc:
        config.load(str(tmp_path / "missing.cf"))
    assert exc.value.exitcode == 78


def test_class_files_and_continuations(tmp_path):
    names = tmp_path / "lhn"
    names.write_text("# comment\nmail.example.org  other.example.org\n")
    cf = tmp_path / "x.cf"
    cf.write_text(f"Fw{names} %[^\\#]\nFR-o {tmp_path}/absent\nC{{Long}}a b\n c\nMfoo, P=/bin/x,\n\tF=abc, A=x $u\n")
    cfg = config.load(str(cf))
    assert {"mail.example.org", "other.example.org"} <= cfg.klass("w")
    assert cfg.klass("R") == set()
    assert cfg.klass("Long") == {"a", "b", "c"}
    assert cfg.mailers["foo"].flags == "abc" and cfg.mailers["foo"].argv == "x $u"


@pytest.mark.parametrize("text,macros,want", [
    ("$j Sendmail $v/$Z; $b", {"j": "h", "v": "8", "Z": "9", "b": "D"}, "h Sendmail 8/9; D"),
    ("$?x$x <$g>$|$g$.", {"g": "a@b"}, "a@b"),
    ("$?x$x <$g>$|$g$.", {"g": "a@b", "x": "A B"}, "A B <a@b>"),
    ("${client_addr}!", {"client_addr": "1.2.3.4"}, "1.2.3.4!"),
])
def test_expand(text, macros, want):
    assert config.expand(text, macros) == want


def test_interval():
    assert options.interval("15m") == 900 and options.interval("1h30m") == 5400
    assert options.interval("5d") == 432000 and options.interval("90") == 90


def test_every_interface_address_is_a_local_literal():
    """[a.b.c.d] for each of this host's interface addresses is local, as Sendmail's $=w."""
    import shutil
    import subprocess

    if not shutil.which("ip"):
        pytest.skip("no ip command to list the interfaces")
    out = subprocess.run(["ip", "-o", "addr", "show"], capture_output=True, text=True).stdout
    found = {line.split()[3].split("/")[0] for line in out.splitlines() if " inet" in line}
    literals = config.local_literals()
    for ip in found:
        assert (f"[ipv6:{ip}]" if ":" in ip else f"[{ip}]") in literals, (ip, literals)


# -- properties (Hypothesis): any cf text gives a Config or a ConfigError, nothing else ----------

from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

CF_LINES = st.one_of(
    st.sampled_from(["O", "O ", "O =", "O MaxMessageSize=x", "O Timeout.command=5q", "O QueueFileMode=9",
                     "D", "Dj", "D{x}y", "C", "C{", "Cw a b", "F", "F{x} -o", "Fw|/bin/false", "K", "K x",
                     "Kaccess hash -o", "M", "Mlocal,", "Mx, P=[IPC], A=TCP $h", "P", "P=", "Pbulk=-x", "T",
                     "Q", "Qg", "Qg, P=/nonexistent, F=f, R=x", "S", "R$* $#error", " continued", "\t", "#"]),
    st.text(alphabet=st.characters(blacklist_categories=["Cs"], max_codepoint=0x17F), max_size=30))


@settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])  # examples: the profile (make fuzz)
@given(lines=st.lists(CF_LINES, max_size=12))
def test_fuzz_cf_reader_raises_only_config_errors(tmp_path_factory, lines):
    cf = tmp_path_factory.mktemp("cf") / "sendmail.cf"
    cf.write_text("\n".join(lines) + "\n", encoding="utf-8")
    try:
        cfg = config.load(str(cf))
    except errors.ConfigError:
        return
    assert isinstance(cfg, config.Config)


def test_mailer_equates_keep_the_case_sendmail_gives_them(tmp_path):
    """readcf's makemailer: r= (recipients per envelope) and m= (messages per connection) are
    not R= (rewriting) and M= (size); the other letters are read in either case."""
    cf = tmp_path / "m.cf"
    cf.write_text("Mx, P=[IPC], F=mDFMuX, S=EnvFromSMTP, R=EnvToSMTP, r=10, m=5, M=1000, a=TCP $h\n")
    fields = config.load(str(cf)).mailers["x"].fields
    assert (fields["R"], fields["r"], fields["M"], fields["m"]) == ("EnvToSMTP", "10", "1000", "5")
    assert fields["A"] == "TCP $h"
