"""One hierarchy of errors, each carrying its sysexits code, enhanced status and SMTP reply code.

Deep code raises these; only the edges translate them: fronts print the text and exit with
``exitcode``, the SMTP server answers ``reply()``, delivery defers (4xx) or bounces (5xx).
Exception text built here is safe to show a peer; other exceptions never reach one.
"""

from __future__ import annotations

# sysexits.h
EX_OK = 0
EX_USAGE = 64
EX_DATAERR = 65
EX_NOINPUT = 66
EX_NOUSER = 67
EX_NOHOST = 68
EX_UNAVAILABLE = 69
EX_SOFTWARE = 70
EX_OSERR = 71
EX_OSFILE = 72
EX_CANTCREAT = 73
EX_IOERR = 74
EX_TEMPFAIL = 75
EX_PROTOCOL = 76
EX_NOPERM = 77
EX_CONFIG = 78

# libsm/strexit.c sm_sysexmsg(): exit code -> (reply code, enhanced status, text)
SYSEXITS: dict[int, tuple[int, str, str]] = {
    EX_USAGE: (500, "5.0.0", "Command line usage error"),
    EX_DATAERR: (501, "5.6.0", "Data format error"),
    EX_NOINPUT: (550, "5.3.0", "Cannot open input"),
    EX_NOUSER: (550, "5.1.1", "User unknown"),
    EX_NOHOST: (550, "5.1.2", "Host unknown"),
    EX_UNAVAILABLE: (554, "5.0.0", "Service unavailable"),
    EX_SOFTWARE: (554, "5.3.0", "Internal error"),
    EX_OSERR: (451, "4.0.0", "Operating system error"),
    EX_OSFILE: (554, "5.3.5", "System file missing"),
    EX_CANTCREAT: (550, "5.0.0", "Can't create output"),
    EX_IOERR: (451, "4.0.0", "I/O error"),
    EX_TEMPFAIL: (450, "4.0.0", "Deferred"),
    EX_PROTOCOL: (554, "5.5.0", "Remote protocol error"),
    EX_NOPERM: (550, "5.0.0", "Insufficient permission"),
    EX_CONFIG: (554, "5.3.5", "Local configuration error"),
}


class MTAError(Exception):
    """Base: a failure with a sysexits code, an enhanced status and an SMTP reply code."""

    exitcode = EX_SOFTWARE
    transcript = ""  # lines a mailer program printed, shown before the error in a DSN

    def __init__(self, text: str | None = None, *, status: str | None = None, code: int | None = None,
                 exitcode: int | None = None):
        if exitcode is not None:
            self.exitcode = exitcode
        default_code, default_status, default_text = SYSEXITS.get(self.exitcode, (554, "5.3.0", "Error"))
        self.text = text or default_text
        self.status = status or default_status
        self.code = code or default_code
        super().__init__(self.text)

    @property
    def temporary(self) -> bool:
        return self.status.startswith("4")

    def reply(self) -> str:
        return f"{self.code} {self.status} {self.text}"


class UsageError(MTAError):
    exitcode = EX_USAGE


class DataError(MTAError):
    exitcode = EX_DATAERR


class NoUser(MTAError):
    exitcode = EX_NOUSER


class NoHost(MTAError):
    exitcode = EX_NOHOST


class Unavailable(MTAError):
    exitcode = EX_UNAVAILABLE


class SoftwareError(MTAError):
    exitcode = EX_SOFTWARE


class OSFailure(MTAError):
    exitcode = EX_OSERR


class CantCreate(MTAError):
    exitcode = EX_CANTCREAT


class IOFailure(MTAError):
    exitcode = EX_IOERR


class TempFail(MTAError):
    exitcode = EX_TEMPFAIL


class NoPermission(MTAError):
    exitcode = EX_NOPERM


class ConfigError(MTAError):
    exitcode = EX_CONFIG


class AddressError(MTAError):
    """A syntactically bad address; ``text`` is sendmail's phrase (e.g. ``Unbalanced '<'``)."""

    exitcode = EX_USAGE

    def __init__(self, text: str, status: str = "5.1.3"):
        super().__init__(text, status=status, code=553)


def for_exitcode(exitcode: int, text: str | None = None) -> MTAError:
    """An error of the class that carries ``exitcode``."""
    for cls in MTAError.__subclasses__():
        if cls.exitcode == exitcode and cls is not AddressError:
            return cls(text)
    return MTAError(text, exitcode=exitcode if exitcode in SYSEXITS else EX_SOFTWARE)
