"""Render etc-mail/ into a self-contained instance: every path under VAR, unprivileged ports.

usage: python scripts/render_etc.py SRC_DIR VAR_DIR
"""

import os
import re
import sys


def render(src: str, var: str) -> None:
    var = os.path.abspath(var)
    etc = os.path.join(var, "etc-mail")
    replacements = [
        ("/etc/mail/", f"{etc}/"),
        ("/var/spool/mqueue-client", f"{var}/spool/mqueue-client"),
        ("/var/spool/mqueue", f"{var}/spool/mqueue"),
        ("/var/mail", f"{var}/mail"),
        ("/var/lib/sendmail/", f"{var}/lib/"),
        ("/run/sendmail/mta/sendmail.pid", f"{var}/run/sendmail.pid"),
        ("/run/sendmail/msp/sendmail.pid", f"{var}/run/sm-client.pid"),
        ("Port=25,", "Port=2525,"),
        ("Port=587,", "Port=2587,"),
        ("A=TCP $h 25\n", "A=TCP $h 2525\n"),
        ("# O LogFile=/var/log/sendmail-py.log", f"O LogFile={var}/log/maillog"),
    ]
    for sub in ("etc-mail", "spool/mqueue", "spool/mqueue-client", "mail", "lib", "run", "log"):
        os.makedirs(os.path.join(var, sub), exist_ok=True)
    os.chmod(os.path.join(var, "mail"), 0o1777)
    table = dict(replacements)  # one pass, so a replaced path is never replaced again
    pattern = re.compile("|".join(re.escape(old) for old, _new in replacements))
    for name in sorted(os.listdir(src)):
        with open(os.path.join(src, name)) as fh:
            text = fh.read()
        text = pattern.sub(lambda m: table[m.group(0)], text)
        if name == "submit.cf":
            text += f"O LogFile={var}/log/maillog\n"
        with open(os.path.join(etc, name), "w") as fh:
            fh.write(text)
    print(f"rendered {src}/ into {etc}/")


if __name__ == "__main__":
    render(sys.argv[1], sys.argv[2])
