"""The lab's scenarios, each run as a story: the commands typed on each host, what they printed,
the files looked at and the logs; the tests check the story, `scripts/lab transcript` writes it
down as docs/lab.md (and the scale-out figure into docs/scaling.md).

- ``backup_mx``: st5 and st2 down; outside's mail for st5 waits on st3 (access To: RELAY), shows
  in st3's mailq with the reason, reaches st5's mbox after st5 starts and st3 runs its queue;
  postmaster@st5 reaches root; st3 refuses to relay elsewhere.
- ``postfix_roles``: Postfix on st2 as the backup of our st5, ours on st3 as the backup of
  Postfix's st2: deferral, flush (postqueue -f, sendmail -q), relay refused.
- ``scale_out``: N hosts sharing scale.example.test by equal MX preferences, a load from
  outside, one host killed mid-run; how the accepted mail spread, and what was lost.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

import lab_mta
import lab_net
import lab_setup

LOAD = Path(__file__).resolve().parent / "lab_load.py"
FROM = "mtabob@outside.example.test"


class StoryError(Exception):
    pass


class Story:
    def __init__(self, lab: lab_setup.Lab):
        self.lab, self.parts = lab, []

    def redact(self, text: str) -> str:
        return text.replace(str(self.lab.state), "$LAB").replace(f"{lab_mta.BIN}/", "")

    def say(self, text: str) -> None:
        self.parts.append(text.strip() + "\n")

    def block(self, text: str) -> None:
        self.parts.append("```\n" + self.redact(text).rstrip() + "\n```\n")

    def run(self, host: str, *argv: str, input: str | None = None, timeout: float = 120) -> str:
        """argv on host (a person would type it in `ip netns exec NS bash`), written down with its output."""
        r = self.lab[host].sh(*argv, input=input, timeout=timeout)
        typed = " ".join(shlex.quote(a) for a in argv)
        here = f" <<'EOF'\n{input}EOF" if input is not None else ""
        self.block(f"{host}# {typed}{here}\n{r.stdout}{r.stderr}")
        return r.stdout + r.stderr

    def wait(self, pred, what: str, seconds: float = 30) -> None:
        if not lab_net.wait_for(pred, seconds):
            logs = "\n".join(f"--- {h.name}\n{h.log()}" for h in self.lab.hosts.values() if h.log())
            raise StoryError(f"waited {seconds}s for {what}\n{logs}")

    def logs(self, *names: str) -> None:
        for name in names:
            h = self.lab[name]
            text = h.log() if h.kind != "dns" else (h.root / "nsd.log").read_text(errors="replace")
            self.say(f"**{name}** ({h.fqdn}, {h.kind}): `$LAB/{h.logfile.relative_to(self.lab.state)}`"
                     if h.kind != "dns" else f"**{name}** (nsd): `$LAB/dns/nsd.log`")
            self.block(text or "(nothing logged)")

    def mailbox(self, host: str, user: str) -> str:
        text = self.lab[host].mbox(user)
        self.say(f"`$LAB/{host}/mail/{user}` on {host}:")
        self.block(text)
        return text

    def text(self) -> str:
        return "\n".join(self.parts)


def message(to: str, subject: str, body: str) -> str:
    return f"From: Bob <{FROM}>\nTo: {to}\nSubject: {subject}\n\n{body}\n"


def logged(host: lab_mta.Host, pattern: str):
    return lambda: re.search(pattern, host.log()) is not None


def send(t: Story, rcpt: str, subject: str, body: str, to: str = "") -> None:
    """Outside sends a message to rcpt with its own sendmail (delivering at once)."""
    t.run("outside", "sendmail", "-odi", "-f", FROM, rcpt, input=message(to or rcpt, subject, body))


def try_relay(t: Story, server: str) -> str:
    """Outside asks server to relay to a domain it has nothing to do with (swaks, up to RCPT)."""
    return t.run("outside", "swaks", "--server", server, "--from", FROM,
                 "--to", "someone@elsewhere.example.test", "--quit-after", "RCPT")


def backup_mx(t: Story) -> dict[str, str]:
    """The seed's story; the lab was made with only st3's MTA up."""
    lab, out = t.lab, {}
    st3, st5 = lab["st3"], lab["st5"]
    t.say("st5 (MX 10) and st2 (MX 20) are down; st3 (MX 30) is up. Outside sends to st5:")
    send(t, "mtaalice@st5.example.test", "through the backup MX", "Alice, st5 is down: this waits on st3.",
         to="Alice <mtaalice@st5.example.test>")
    t.wait(logged(st3, r"stat=Deferred"), "st3's first delivery attempt")
    t.say("st3 took it (its access map says `To:st5.example.test RELAY`) and could not pass it on:")
    out["mailq"] = t.run("st3", "mailq")
    if "Total requests: 1\n" not in out["mailq"] or "mtaalice@st5.example.test" not in out["mailq"]:
        raise StoryError(f"st3 should hold the one message for st5:\n{out['mailq']}\n{st3.log()}")
    t.say("st5 comes back, and st3's queue is run:")
    t.run("st5", "sendmail", "-bd")
    t.wait(st5.pid, "st5's daemon")
    out["flush"] = t.run("st3", "sendmail", "-q", "-v")
    t.wait(lambda: "through the backup MX" in st5.mbox("mtaalice"), "the message in st5's mbox")
    t.say("It is in Alice's mailbox on st5, with a Received header from each host it crossed:")
    out["mbox"] = t.mailbox("st5", "mtaalice")
    t.say("Mail for postmaster@st5 reaches root (aliases: `postmaster: root`):")
    send(t, "postmaster@st5.example.test", "for the postmaster", "Hello, postmaster.")
    t.wait(lambda: "for the postmaster" in st5.mbox("root"), "postmaster's message in root's mbox")
    out["root"] = t.mailbox("st5", "root")
    t.say("st3 is a backup for st5.example.test only: relaying to anywhere else is refused:")
    out["relay"] = try_relay(t, "mail.st3.example.test")
    t.say("The logs of every host:")
    t.logs("outside", "st3", "st5", "st2", "dns")
    return out


def postfix_roles(t: Story) -> dict[str, str]:
    """Postfix on st2; the lab was made with only st2's Postfix up."""
    lab, out = t.lab, {}
    st2, st3, st5 = lab["st2"], lab["st3"], lab["st5"]
    pf = ["-c", str(st2.pf_etc)]
    t.say("Postfix (st2, MX 20) as the backup of our st5, which is down; st3 is down too:")
    send(t, "mtaalice@st5.example.test", "kept by Postfix", "Postfix holds this until st5 is back.",
         to="Alice <mtaalice@st5.example.test>")
    t.wait(logged(st2, r"status=deferred"), "Postfix's first delivery attempt")
    out["postqueue"] = t.run("st2", "postqueue", *pf, "-p")
    t.run("st5", "sendmail", "-bd")
    t.wait(st5.pid, "st5's daemon")
    out["postflush"] = t.run("st2", "postqueue", *pf, "-f")
    t.wait(lambda: "kept by Postfix" in st5.mbox("mtaalice"), "Postfix's message in st5's mbox")
    out["mbox5"] = t.mailbox("st5", "mtaalice")
    t.say("Ours (st3, MX 20 of st2.example.test) as the backup of Postfix's st2, which is stopped now:")
    t.run("st2", "postfix", *pf, "stop")
    st3.start()
    send(t, "mtabob@st2.example.test", "kept by sendmail-py", "st3 holds this until Postfix on st2 is back.")
    t.wait(logged(st3, r"stat=Deferred"), "st3's first delivery attempt")
    out["mailq"] = t.run("st3", "mailq")
    before = st2.log().count("daemon started")
    t.run("st2", "postfix", *pf, "start")
    t.wait(lambda: st2.wait_postfix(before), "Postfix on st2 to come back")
    out["flush"] = t.run("st3", "sendmail", "-q", "-v")
    t.wait(lambda: "kept by sendmail-py" in st2.mbox("mtabob"), "our message in Postfix's mailbox on st2")
    out["mbox2"] = t.mailbox("st2", "mtabob")
    t.say("Postfix relays for st5.example.test only:")
    out["relay"] = try_relay(t, "mail.st2.example.test")
    t.say("The logs:")
    t.logs("outside", "st2", "st3", "st5")
    return out


def delivered(host: lab_mta.Host) -> Counter:
    """The load's message numbers in host's Maildir for mtaalice."""
    found: Counter = Counter()
    for path in [*(host.mail / "mtaalice" / "new").glob("*"), *(host.mail / "mtaalice" / "cur").glob("*")]:
        found.update(int(n) for n in re.findall(r"^Subject: load (\d+)$", path.read_text(errors="replace"), re.M))
    return found


def queued(host: lab_mta.Host) -> int:
    return len(list(host.queue.glob("qf*")))


def scale_out(t: Story, n: int, count: int, clients: int, victim: str = "sc2") -> dict:
    """count messages from clients on outside to n hosts of scale.example.test; victim is
    killed (SIGKILL) a third of the way in, then restarted and its queue run."""
    lab = t.lab
    hosts = [lab[f"sc{i}"] for i in range(1, n + 1)]
    argv = [sys.executable, str(LOAD), "scale.example.test", "mtaalice@scale.example.test", str(count), str(clients)]
    zone = (lab["dns"].root / "example.test.zone").read_text()
    t.say(f"{n} hosts share scale.example.test, all at `MX 10`:")
    t.block("".join(line + "\n" for line in zone.splitlines() if line.startswith(("scale", "mail.sc"))))
    t.say(f"Outside sends {count} messages from {clients} clients; {victim} is killed (SIGKILL, its "
          "whole process group) a third of the way in:")
    proc = subprocess.Popen(lab["outside"].cmd(*argv), stdout=subprocess.PIPE, text=True)
    watchdog = threading.Timer(300, proc.kill)
    watchdog.start()
    acks: dict[int, str] = {}
    retries: Counter = Counter()
    unsent, killed_at = 0, 0
    started = time.time()
    for line in proc.stdout:  # type: ignore[union-attr]
        kind, num, *rest = line.split(maxsplit=3)
        if kind == "ack":
            acks[int(num)] = rest[0].split(".")[1]
        elif kind == "retry":
            retries[rest[0].split(".")[1]] += 1
        elif kind == "unsent":
            unsent += 1
        if not killed_at and len(acks) >= count // 3:
            lab[victim].stop(hard=True)
            killed_at = len(acks)
    proc.wait(30)
    watchdog.cancel()
    elapsed = time.time() - started
    t.block(f"outside# {' '.join(['python3', 'scripts/lab_load.py', *argv[2:]])}\n"
            f"({len(acks)} acknowledged, {sum(retries.values())} retried on another host, {unsent} unsent, "
            f"{elapsed:.1f}s; {victim} killed after {killed_at} acknowledged)")
    t.say(f"What {victim} had acknowledged and not yet delivered is in its queue; the last lines of its log:")
    t.run(victim, "mailq")
    t.block("\n".join(lab[victim].log().splitlines()[-6:]))
    t.say(f"{victim} is started again and runs its queue; the others deliver on their own:")
    t.run(victim, "sendmail", "-bd")
    t.wait(lab[victim].pid, f"{victim}'s daemon")
    t.run(victim, "sendmail", "-q")
    t.wait(lambda: all(queued(h) == 0 for h in hosts), "every scale host's queue to empty", 120)
    t.wait(lambda: set(acks) <= set().union(*(delivered(h) for h in hosts)), "every acknowledged message", 60)
    got = {h.name: delivered(h) for h in hosts}
    everywhere = sum(got.values(), Counter())
    result = {"acks": acks, "retries": retries, "unsent": unsent, "killed_at": killed_at, "delivered": got,
              "elapsed": elapsed,
              "lost": sorted(set(acks) - set(everywhere)),
              "duplicates": sum(c - 1 for c in everywhere.values() if c > 1)}
    t.parts.append(figure(result, count, victim))
    return result


def figure(r: dict, count: int, victim: str) -> str:
    by_host = Counter(r["acks"].values())
    total = len(r["acks"])
    rows = ["| host | acknowledged | share | delivered there | attempts refused or cut off (sent elsewhere) |",
            "|---|---:|---:|---:|---:|"]
    for name, got in r["delivered"].items():
        rows.append(f"| {name}{' (killed)' if name == victim else ''} | {by_host[name]} | "
                    f"{100 * by_host[name] / max(total, 1):.0f}% | {sum(got.values())} | {r['retries'][name]} |")
    return ("\n".join(rows) + f"\n\n{count} messages sent in {r['elapsed']:.1f}s, {total} acknowledged, "
            f"{r['unsent']} unsent; "
            f"{victim} killed after {r['killed_at']} acknowledged; acknowledged but not delivered "
            f"(lost): **{len(r['lost'])}**; delivered twice: {r['duplicates']}.\n")


HEAD = """# The lab: three mail hosts, a Debian DNS server, Postfix in the roles

Generated by `scripts/lab transcript` (do not edit by hand): one run of the lab's scenarios, the
commands typed on each host, what they printed, the logs of every host and the delivered messages.
Each host is a network namespace (`ip netns exec smpy-lab-HOST bash` in a lab made by `make lab`);
our commands there run with that host's `-C $LAB/HOST/etc-mail/sendmail.cf`, `$LAB` being the lab's
state directory. To do it yourself, as root: `make lab` builds the lab (var/lab) and prints how to get
a shell on each host, send a message and where to look; `make lab-down` removes it; `make lab
LAB_ARGS="--st2 postfix"` puts Postfix on st2, `--no-mailertable` leaves st3 to the MX records,
`--scale 5` adds sc1..sc5. The same stories are the lab tests (tests/lab/).

DNS is Debian's nsd, in its own namespace, serving example.test (and the reverse zone):

"""


def write_docs(out: Path, scaling: Path, prefix: str, scale_n: int = 5, count: int = 400) -> None:
    parts = [HEAD]
    with tempfile.TemporaryDirectory(prefix="smpy-lab-transcript.") as tmp:
        os.chmod(tmp, 0o755)  # Postfix's daemons and local users go through it
        topo = lab_setup.topology()
        lab = lab_setup.Lab.create(Path(tmp) / "backup", topo, prefix, up=("st3",))
        try:
            parts.append("```\n" + (lab["dns"].root / "example.test.zone").read_text() + "```\n")
            parts.append("## Backup MX: the seed's story\n")
            t = Story(lab)
            backup_mx(t)
            parts.append(t.text())
        finally:
            lab.destroy()
        lab = lab_setup.Lab.create(Path(tmp) / "postfix", lab_setup.topology(st2="postfix"), prefix, up=("st2",))
        try:
            parts.append("## Postfix in the roles\n")
            t = Story(lab)
            postfix_roles(t)
            parts.append(t.text())
        finally:
            lab.destroy()
        lab = lab_setup.Lab.create(Path(tmp) / "scale", lab_setup.topology(scale=scale_n), prefix,
                                   up=tuple(f"sc{i}" for i in range(1, scale_n + 1)))
        try:
            parts.append("## Scale out: equal-preference MX hosts\n")
            t = Story(lab)
            scale_out(t, scale_n, count, clients=8)
            parts.append(t.text())
            fig = t.parts[-1]
        finally:
            lab.destroy()
    out.write_text("\n".join(parts))
    if scaling.exists():
        text = scaling.read_text()
        begin, end = "<!-- lab:figure -->\n", "<!-- /lab:figure -->\n"
        if begin in text and end in text:
            head, rest = text.split(begin, 1)
            scaling.write_text(head + begin + fig + end + rest.split(end, 1)[1])
