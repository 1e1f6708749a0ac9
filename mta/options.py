"""The options a cf may set: each one's default and converter (``OPTIONS``), every name Sendmail
knows (``KNOWN_OPTIONS``, readcf.c OptionTab), the old one-letter names (``SHORT_OPTIONS``) and
the converters themselves (``interval`` for Sendmail's 1h30m, ``boolean``, ``mode``...).
mta.config sets them from O lines and -O; a value is converted once, when set.
"""

from __future__ import annotations

import os


def interval(text: str, default: str = "s") -> int:
    """'5d', '4h', '15m', '30s', '1h30m', '90' (seconds, or the default unit) -> seconds."""
    text = text.strip()
    if not text:
        return 0
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
    total = 0
    for number, unit in _numbers_and_units(text):
        total += int(number) * units.get(unit or default, 1)
    return total


def _numbers_and_units(text: str) -> list[tuple[str, str]]:
    """re.findall(r"(\\d+)([smhdw]?)", text), without re (its import is much of a command's start)."""
    found, i, n = [], 0, len(text)
    while i < n:
        if not text[i].isdecimal():
            i += 1
            continue
        j = i
        while j < n and text[j].isdecimal():
            j += 1
        unit = text[j] if j < n and text[j] in "smhdw" else ""
        found.append((text[i:j], unit))
        i = j + len(unit)
    return found


NOW = -1  # convtime's "now": Timeout.queuereturn=now returns entries at once, untried


def _return_time(text: str) -> int:
    """Timeout.queuereturn*: convtime(val, 'd') - "now" is NOW, a bare number is days."""
    return NOW if text.strip().lower() == "now" else interval(text, "d")


def _warn_time(text: str) -> int:
    """Timeout.queuewarn*: convtime(val, 'h') - a bare number is hours."""
    return interval(text, "h")


def boolean(text: str) -> bool:
    return text.strip()[:1].lower() in ("t", "y", "1", "") if text is not None else True


def mode(text: str) -> int:
    return int(text, 8)


def first_letter(text: str) -> str:
    return text.strip()[:1].lower()


def words(text: str) -> tuple[str, ...]:
    return tuple(w.lower() for w in text.replace(",", " ").split())


def text_value(text: str) -> str:
    return text


def _cpus() -> int:
    return os.cpu_count() or 1


# One line per option we act on: name -> (default, converter).  Defaults are sendmail's
# (op.me) unless marked (ext): our extensions.
OPTIONS: dict[str, tuple[object, object]] = {
    "AliasFile": ("/etc/mail/aliases", text_value),
    "DeliveryMode": ("b", first_letter),
    "ErrorMode": ("p", first_letter),
    "IgnoreDots": (False, boolean),
    "MeToo": (True, boolean),
    "QueueDirectory": ("/var/spool/mqueue", text_value),
    "QueueFileMode": (0o600, mode),
    "TempFileMode": (0o600, mode),
    "MinQueueAge": (0, interval),
    "MaxQueueRunSize": (0, int),
    "QueueSortOrder": ("priority", text_value),
    "RecipientFactor": (30000, int),
    "ClassFactor": (1800, int),
    "RetryFactor": (90000, int),
    "QueueFactor": (600000, int),
    "QueueLA": (8 * _cpus(), int),
    "RefuseLA": (12 * _cpus(), int),
    "DelayLA": (0, int),
    "MaxQueueChildren": (0, int),
    "MaxRunnersPerQueue": (1, int),
    "CheckpointInterval": (10, int),
    "NiceQueueRun": (0, int),
    "MaxQueueAge": (0, interval),
    "MetricsFile": ("", text_value),  # (ext): Prometheus textfile written after each queue run
    "Timeout.queuereturn": (5 * 86400, _return_time),
    "Timeout.queuewarn": (4 * 3600, _warn_time),
    **{f"Timeout.{t}.{c}": (None, _warn_time if t == "queuewarn" else _return_time)
       for t in ("queuewarn", "queuereturn")
       for c in ("normal", "urgent", "non-urgent", "dsn")},  # None: Timeout.queuewarn/queuereturn
    "Timeout.connect": (0, interval),
    "Timeout.iconnect": (0, interval),
    "Timeout.command": (3600, interval),
    "Timeout.datablock": (3600, interval),
    "Timeout.hoststatus": (1800, interval),
    "Timeout.initial": (300, interval),
    "Timeout.datafinal": (3600, interval),
    "ConnectionCacheSize": (1, int),
    "ConnectionCacheTimeout": (300, interval),
    "SingleThreadDelivery": (False, boolean),
    "FallbackMXhost": ("", text_value),
    "FallbackSmartHost": ("", text_value),
    "CACertPath": ("", text_value),
    "ClientCertFile": ("", text_value),
    "ClientKeyFile": ("", text_value),
    "MaxMessageSize": (0, int),
    "MinFreeBlocks": (100, int),
    "MaxHeadersLength": (32768, int),
    "MaxHopCount": (25, int),
    "MaxRecipientsPerMessage": (0, int),
    "MaxNOOPCommands": (20, int),
    "BadRcptThrottle": (0, int),
    "BadRcptThrottleDelay": (1, interval),
    "PrivacyOptions": ((), words),
    "TrustedUser": ("", text_value),
    "DefaultUser": ("mail:mail", text_value),
    "DeadLetterDrop": ("", text_value),
    "PidFile": ("/run/sendmail.pid", text_value),
    "HostStatusDirectory": ("", text_value),
    "StatusFile": ("", text_value),
    "SmtpGreetingMessage": ("$j Sendmail $v/$Z; $b", text_value),
    "UnixFromLine": ("From $g $d", text_value),
    "LogLevel": (9, int),
    "SevenBitInput": (False, boolean),
    "SendMimeErrors": (True, boolean),
    "SuperSafe": ("true", text_value),
    "ForwardPath": ("$z/.forward", text_value),
    "MailSpoolDirectory": ("/var/mail", text_value),  # (ext)
    "MailboxFormat": ("mbox", text_value),  # (ext)
    "LogFile": ("", text_value),  # (ext): empty = syslog, facility mail
    "MSPQueueDirectory": ("", text_value),  # (ext)
    "MaildropDirectory": ("", text_value),  # (ext): users' drop directory (mta.maildrop); '' = beside the queue
    "PGPKeyMap": ("", text_value),  # (ext): recipient -> public key file, for encryption at delivery
    "AuthPasswordFile": ("", text_value),  # (ext): user:hash lines for SMTP AUTH (mta.authdb)
    "NameServers": ("", text_value),  # (ext): ip[:port],... instead of /etc/resolv.conf
    "ServerCertFile": ("", text_value),
    "ServerKeyFile": ("", text_value),
    "CACertFile": ("", text_value),
    "AuthMechanisms": ("", text_value),
    "NoRecipientAction": ("none", text_value),
    "MaxDaemonChildren": (0, int),
    "DaemonWorkers": (0, int),  # (ext): SMTP worker processes; 0 = one per CPU
    "RunAsUser": ("", text_value),  # user[:group]: whom root's MSP queue files belong to (submit.run_as)
    "SafeFileEnvironment": ("", text_value),
}

# Every option name sendmail 8.18 knows (readcf.c OptionTab); a name outside this set given
# with -O is an error, one inside it that we do not act on is stored and ignored.
KNOWN_OPTIONS = set(OPTIONS) | {
    "AliasWait", "AllowBogusHELO", "AuthMaxBits", "AuthMechanisms", "AuthOptions", "AuthRealm",
    "AutoRebuildAliases", "BadRcptThrottle", "BadRcptThrottleDelay", "BlankSub", "CACertFile",
    "CACertPath", "CertFingerprintAlgorithm", "CheckAliases", "CheckpointInterval", "CipherList",
    "ClientCertFile", "ClientKeyFile", "ClientPortOptions", "ClientSSLOptions", "ColonOkInAddr",
    "ConnectionCacheSize", "ConnectionCacheTimeout", "ConnectionRateThrottle",
    "ConnectionRateWindowSize", "ConnectOnlyTo", "ControlSocketName", "CRLFile", "CRLPath",
    "DaemonPortOptions", "DataFileBufferSize", "DefaultAuthInfo", "DefaultCharSet",
    "DelayLA", "DeliverByMin", "DHParameters", "DialDelay", "DirectSubmissionModifiers",
    "DontBlameSendmail", "DontExpandCnames", "DontInitGroups", "DontProbeInterfaces",
    "DontPruneRoutes", "DoubleBounceAddress", "DSN_DomainAsRequired", "EightBitMode",
    "ErrorHeader", "FallbackMXhost", "FallbackSmartHost", "FastSplit", "HeloName",
    "HelpFile", "HoldExpensive", "HostsFile", "InputMailFilters", "LDAPDefaultSpec",
    "MailboxDatabase", "MaxAliasRecursion", "MaxHeadersLength", "MaxMimeHeaderLength",
    "MaxNOOPCommands", "MaxQueueChildren", "MaxRunnersPerQueue", "MaxRecipientsPerMessage",
    "MaxRecipientsPerMessageRejectCode", "MciCacheTimeout", "MilterLogLevel", "MinFreeBlocks",
    "MinQueueAge", "MustQuoteChars", "NiceQueueRun", "OldStyleHeaders", "OperatorChars",
    "ProcessTitlePrefix", "QueueFactor", "QueueLA", "QueueFileMode", "QueueDirectory",
    "RandFile", "RefuseLA", "RejectLogInterval", "RejectNUL", "RequireCertificates",
    "ResolverOptions", "RrtImpliesDsn", "RunAsUser", "SendMimeErrors", "ServerCertFile",
    "ServerKeyFile", "ServerSSLOptions", "SharedMemoryKey", "SharedMemoryKeyFile",
    "SingleLineFromHeader", "SingleThreadDelivery", "SmtpGreetingMessage", "SoftBounce",
    "SSLEngine", "SSLEnginePath", "StatusFile", "StrictRFC821", "TimeZoneSpec",
    "TLSFallbacktoClear", "TrustedUser", "UseErrorsTo", "UseMSP", "UserDatabaseSpec",
    "Verbose", "XscriptFileBufferSize", "QueueSortOrder", "LogLevel", "UseCompressedIPv6Addresses",
    "SetCertAltnames", "HeaderCheckFlags", "ProxyProtocol",
}

# Old one-letter names, as for `-oXvalue` and `Ox` lines (op.me "Option Settings").
SHORT_OPTIONS = {
    "7": "SevenBitInput", "8": "EightBitMode", "A": "AliasFile", "a": "AliasWait", "B": "BlankSub",
    "b": "MinFreeBlocks", "C": "CheckpointInterval", "c": "HoldExpensive", "d": "DeliveryMode",
    "E": "ErrorHeader", "e": "ErrorMode", "F": "TempFileMode", "f": "SaveFromLine",
    "G": "MatchGECOS", "H": "HelpFile", "h": "MaxHopCount", "i": "IgnoreDots",
    "I": "ResolverOptions", "j": "SendMimeErrors", "k": "ConnectionCacheSize",
    "K": "ConnectionCacheTimeout", "L": "LogLevel", "m": "MeToo", "n": "CheckAliases",
    "O": "DaemonPortOptions", "o": "OldStyleHeaders", "p": "PrivacyOptions",
    "q": "QueueFactor", "Q": "QueueDirectory", "R": "DontPruneRoutes", "r": "Timeout",
    "S": "StatusFile", "s": "SuperSafe", "T": "Timeout.queuereturn", "t": "TimeZoneSpec",
    "u": "DefaultUser", "U": "UserDatabaseSpec", "V": "FallbackMXhost", "v": "Verbose",
    "w": "TryNullMXList", "x": "QueueLA", "X": "RefuseLA", "Y": "ForkEachJob",
    "y": "RecipientFactor", "z": "ClassFactor", "Z": "RetryFactor",
}
KNOWN_OPTIONS |= set(SHORT_OPTIONS.values())
