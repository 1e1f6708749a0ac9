"""Metrics in Prometheus' text exposition format, as a node-exporter textfile (MetricsFile, ext).

Written after every queue run (``sendmail -q`` and the daemon's runs):
  * queue sizes by queue directory and state (queued, deferred, quarantined) and by age,
    and the age of the oldest entry (gauges, from a scan of every queue directory);
  * delivered / deferred / bounced message counters and a delivery latency histogram (time
    from queueing to delivery), added up over runs: the previous file is read back;
  * accepted / rejected / discarded / quarantined messages and connections, when a StatusFile
    exists (Sendmail's own counters, which the daemon and submissions keep);
  * the last run's duration and time.
The file is written beside itself and renamed, under an flock on a lock file, so node-exporter
never reads half a file and parallel runners never lose a count.  Standard library only.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import time

BUCKETS = (1, 5, 30, 60, 300, 900, 3600, 14400, 86400)
AGES = (300, 3600, 14400, 86400, 432000)
_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*(?:\{[^}]*\})?) (\S+)$")

HELP = {
    "sendmail_queue_messages": ("gauge", "Entries in a queue directory by state"),
    "sendmail_queue_messages_older_than_seconds": ("gauge", "Entries queued longer than the age"),
    "sendmail_queue_oldest_message_age_seconds": ("gauge", "Age of the oldest entry"),
    "sendmail_messages_delivered_total": ("counter", "Messages delivered by queue runs"),
    "sendmail_messages_deferred_total": ("counter", "Delivery attempts deferred by queue runs"),
    "sendmail_messages_bounced_total": ("counter", "Messages bounced by queue runs"),
    "sendmail_queue_runs_total": ("counter", "Queue runs"),
    "sendmail_delivery_latency_seconds": ("histogram", "From queueing to delivery, per message"),
    "sendmail_messages_accepted_total": ("counter", "Messages received (StatusFile msgsfr)"),
    "sendmail_messages_rejected_total": ("counter", "Messages rejected (StatusFile msgsrej)"),
    "sendmail_messages_discarded_total": ("counter", "Messages discarded (StatusFile msgsdis)"),
    "sendmail_messages_quarantined_total": ("counter", "Messages quarantined (StatusFile msgsqur)"),
    "sendmail_connections_total": ("counter", "SMTP connections (StatusFile)"),
    "sendmail_last_queue_run_duration_seconds": ("gauge", "Duration of the last queue run"),
    "sendmail_last_queue_run_timestamp_seconds": ("gauge", "When the last queue run ended"),
}


def _labels(**kv) -> str:
    inner = ",".join(f'{k}="{_escape(str(v))}"' for k, v in kv.items())
    return "{" + inner + "}" if inner else ""


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def read_samples(path: str) -> dict[str, float]:
    """The samples of an earlier file: 'name{labels}' -> value (comments skipped)."""
    out: dict[str, float] = {}
    try:
        with open(path, encoding="utf-8") as fh:
            for line in fh:
                m = _SAMPLE.match(line.strip())
                if m:
                    with contextlib.suppress(ValueError):
                        out[m.group(1)] = float(m.group(2))
    except OSError:
        pass
    return out


def _control_head(path: str) -> tuple[int, int]:
    """T (creation time) and N (tries) of a control file, from its first lines."""
    ctime = tries = 0
    try:
        with open(path, "rb") as fh:
            for raw in fh.read(512).split(b"\n")[:8]:
                if raw[:1] == b"T" and raw[1:].isdigit():
                    ctime = int(raw[1:])
                elif raw[:1] == b"N" and raw[1:].isdigit():
                    tries = int(raw[1:])
    except OSError:
        pass
    return ctime, tries


def queue_samples(qdirs: list[str], now: float) -> dict[str, float]:
    """Gauges for these queue directories: sizes by state, by age, oldest age."""
    from mta import queue

    out: dict[str, float] = {}
    for qdir in qdirs:
        counts = {"queued": 0, "deferred": 0, "quarantined": 0}
        ages: list[float] = []
        for letter in ("q", "h"):
            try:
                ids = queue.ids(qdir, letter)
            except Exception:  # noqa: BLE001 - an unreadable directory has no samples
                continue
            for qid in ids:
                ctime, tries = _control_head(queue.qf_path(qdir, qid, letter))
                state = "quarantined" if letter == "h" else "deferred" if tries else "queued"
                counts[state] += 1
                if ctime:
                    ages.append(max(now - ctime, 0))
        for state, n in counts.items():
            out["sendmail_queue_messages" + _labels(queue=qdir, state=state)] = n
        for age in AGES:
            out["sendmail_queue_messages_older_than_seconds" + _labels(queue=qdir, age=age)] = sum(
                1 for a in ages if a > age)
        out["sendmail_queue_oldest_message_age_seconds" + _labels(queue=qdir)] = max(ages, default=0)
    return out


def status_samples(cfg) -> dict[str, float]:
    """Sendmail's own counters from the StatusFile, when it exists."""
    path = cfg["StatusFile"]
    if not path:
        return {}
    from mta import stats

    try:
        with open(path, "rb") as fh:
            st = stats.decode(fh.read())
    except OSError:
        return {}
    if st is None:
        return {}
    return {
        "sendmail_messages_accepted_total": sum(st["nf"]),
        "sendmail_messages_rejected_total": sum(st["nr"]),
        "sendmail_messages_discarded_total": sum(st["nd"]),
        "sendmail_messages_quarantined_total": sum(st["nq"]),
        "sendmail_connections_total" + _labels(direction="in"): st["cf"],
        "sendmail_connections_total" + _labels(direction="out"): st["ct"],
        "sendmail_connections_total" + _labels(direction="rejected"): st["cr"],
    }


def _add_run(old: dict[str, float], tally, seconds: float, now: float) -> dict[str, float]:
    out: dict[str, float] = {}
    for name, value in (("delivered", tally.delivered), ("deferred", tally.deferred),
                        ("bounced", tally.bounced)):
        key = f"sendmail_messages_{name}_total"
        out[key] = old.get(key, 0) + value
    out["sendmail_queue_runs_total"] = old.get("sendmail_queue_runs_total", 0) + 1
    base = "sendmail_delivery_latency_seconds"
    for le in (*BUCKETS, "+Inf"):
        key = f'{base}_bucket{{le="{le}"}}'
        out[key] = old.get(key, 0) + sum(1 for x in tally.latencies if le == "+Inf" or x <= le)
    out[f"{base}_sum"] = old.get(f"{base}_sum", 0) + sum(tally.latencies)
    out[f"{base}_count"] = old.get(f"{base}_count", 0) + len(tally.latencies)
    out["sendmail_last_queue_run_duration_seconds"] = round(seconds, 3)
    out["sendmail_last_queue_run_timestamp_seconds"] = int(now)
    return out


def render(samples: dict[str, float]) -> str:
    """The text format: one HELP and TYPE line per family, then its samples."""
    families: dict[str, list[str]] = {}
    for key, value in samples.items():
        name = key.split("{", 1)[0]
        family = re.sub(r"_(bucket|sum|count)$", "", name) if name.startswith(
            "sendmail_delivery_latency_seconds") else name
        text = str(int(value)) if float(value).is_integer() else repr(float(value))
        families.setdefault(family, []).append(f"{key} {text}")
    out = []
    for family, lines in families.items():
        kind, text = HELP.get(family, ("untyped", family))
        out += [f"# HELP {family} {text}", f"# TYPE {family} {kind}", *lines]
    return "\n".join(out) + "\n"


def after_run(cfg, qdirs: list[str], tally, seconds: float) -> None:
    """Rewrite MetricsFile with this run added; a failure to write is logged by no one and
    costs no mail (metrics are never worth a lost message)."""
    path = cfg["MetricsFile"]
    now = time.time()
    try:
        with open(path + ".lock", "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            samples = {**queue_samples(qdirs, now), **_add_run(read_samples(path), tally, seconds, now),
                       **status_samples(cfg)}
            tmp = f"{path}.{os.getpid()}.tmp"
            with open(tmp, "w", encoding="utf-8") as fh:
                fh.write(render(samples))
            os.chmod(tmp, 0o644)
            os.rename(tmp, path)
    except OSError:
        return

