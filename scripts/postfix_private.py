"""A private Postfix instance, as the lab, the benchmarks and the tests' peer run Debian's Postfix:
its own config, queue and data directories under one root, nothing chrooted, never the system's
instance.  ``layout(root, settings)`` writes root/etc (main.cf: the common lines below, then
settings, which override them; Debian's master.cf, its smtp service on ``listen`` if given) and
makes root/queue and root/data; ``postfix -c ROOT/etc start`` runs it.
"""

from __future__ import annotations

import os
import pwd
import re
import subprocess
from pathlib import Path

MASTER_CF = "/etc/postfix/master.cf"


def common(root: Path) -> dict[str, str]:
    return {"queue_directory": f"{root}/queue", "data_directory": f"{root}/data",
            "command_directory": "/usr/sbin", "daemon_directory": "/usr/lib/postfix/sbin",
            "mail_owner": "postfix", "setgid_group": "postdrop", "compatibility_level": "3.6",
            "inet_interfaces": "127.0.0.1", "inet_protocols": "ipv4", "mynetworks": "127.0.0.0/8",
            "maillog_file": f"{root}/maillog", "maillog_file_prefixes": str(root),
            "alias_maps": "", "alias_database": "", "biff": "no"}


def layout(root: Path, settings: dict[str, str], listen: str = "", head: str = "") -> Path:
    """The instance's files under root (made if missing); returns its config directory.
    head: a comment for the top of main.cf."""
    etc = root / "etc"
    for sub in ("etc", "queue", "data"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    main = {**common(root), **settings}
    (etc / "main.cf").write_text(head + "".join(f"{k} = {v}\n" for k, v in main.items()))
    master = Path(MASTER_CF if os.path.exists(MASTER_CF) else MASTER_CF + ".proto").read_text()
    if listen:
        master = re.sub(r"(?m)^smtp(\s+)inet", rf"{listen}\1inet", master)
    (etc / "master.cf").write_text(master)
    subprocess.run(["postconf", "-c", str(etc), "-F", "*/*/chroot = n"], check=True, capture_output=True)
    subprocess.run(["postfix", "-c", str(etc), "set-permissions"], capture_output=True)
    owner = pwd.getpwnam("postfix")
    os.chown(root / "data", owner.pw_uid, owner.pw_gid)
    return etc
