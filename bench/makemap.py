"""makemap of 100k lines and 100k random lookups: ours against Debian's in the same run.

Build: `makemap hash` (ours) vs Debian's makemap (libdb), same input.  Lookups: our reader
(mta.maps) vs libdb through Debian's python3 dbm.ndbm, the same keys, on the same .db file
(the one Debian's makemap built).  Needs scripts/install-test-deps (Debian's makemap unpacked).
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time

N = int(os.environ.get("BENCH_LINES", "100000"))
DEBIAN = "/opt/debian-sendmail/usr/libexec/sendmail/makemap"


def timed(cmd: list[str], stdin: bytes = b"") -> float:
    start = time.perf_counter()
    r = subprocess.run(cmd, input=stdin, capture_output=True)
    if r.returncode:
        sys.exit(f"{cmd[0]} failed: {r.stderr.decode()[:300]}")
    return time.perf_counter() - start


LOOKUP = """
import random, sys, time
keys = [b"user%d@example%d.org" % (i, i % 97) for i in range({n})]
random.seed(7); probe = [random.choice(keys) for _ in range({n})]
{setup}
t = time.perf_counter(); found = sum(1 for k in probe if get(k) is not None); t = time.perf_counter() - t
print(t, found)
"""


def main() -> None:
    if not os.path.exists(DEBIAN):
        sys.exit("Debian's makemap is not unpacked: run scripts/install-test-deps as root")
    bindir = os.path.dirname(sys.executable)
    data = b"".join(b"user%d@example%d.org\tREJECT some text %d\n" % (i, i % 97, i) for i in range(N))
    with tempfile.TemporaryDirectory() as d:
        open(f"{d}/empty.cf", "w").close()
        ours = timed([f"{bindir}/makemap", "hash", f"{d}/ours"], data)
        theirs = timed([DEBIAN, "-C", f"{d}/empty.cf", "hash", f"{d}/theirs"], data)
        print(f"makemap hash, {N} lines: ours {ours:.2f} s, Debian {theirs:.2f} s, ratio {ours / theirs:.1f}x")
        bt_ours = timed([f"{bindir}/makemap", "btree", f"{d}/bours"], data)
        bt_theirs = timed([DEBIAN, "-C", f"{d}/empty.cf", "btree", f"{d}/btheirs"], data)
        print(f"makemap btree, {N} lines: ours {bt_ours:.2f} s, Debian {bt_theirs:.2f} s, "
              f"ratio {bt_ours / bt_theirs:.1f}x")
        our_setup = (f"from mta import maps\nfrom mta.config import MapDecl\n"
                     f"m = maps.open_reader('hash', '{d}/theirs')\nget = m.get")
        libdb_setup = f"import dbm.ndbm\ndb = dbm.ndbm.open('{d}/theirs', 'r')\nget = db.get"
        out = subprocess.run([sys.executable, "-c", LOOKUP.format(n=N, setup=our_setup)],
                             capture_output=True, text=True, check=True).stdout.split()
        lib = subprocess.run(["/usr/bin/python3", "-c", LOOKUP.format(n=N, setup=libdb_setup)],
                             capture_output=True, text=True, check=True).stdout.split()
        print(f"{N} random lookups in Debian's .db: ours {float(out[0]):.2f} s ({out[1]} found), "
              f"libdb {float(lib[0]):.2f} s ({lib[1]} found), ratio {float(out[0]) / float(lib[0]):.1f}x")


if __name__ == "__main__":
    main()
