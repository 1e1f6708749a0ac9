"""Build the release (sdist and wheel into dist/) and sign each file when a key is configured.

usage: python scripts/release.py            (RELEASE_KEY=<key id or email> to sign; GNUPGHOME as usual)
Writes dist/NAME and, when signing, dist/NAME.asc (ASCII-armored detached signatures).
"""

import os
import subprocess
import sys


def main() -> int:
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    dist = os.path.join(root, "dist")
    before = set(os.listdir(dist)) if os.path.isdir(dist) else set()
    subprocess.run([sys.executable, "-m", "build", "--sdist", "--wheel", "--outdir", dist, root], check=True)
    built = sorted(n for n in os.listdir(dist) if n not in before and not n.endswith(".asc")) or sorted(
        n for n in os.listdir(dist) if not n.endswith(".asc"))
    key = os.environ.get("RELEASE_KEY", "")
    for name in built:
        path = os.path.join(dist, name)
        if key:
            subprocess.run(["gpg", "--batch", "--yes", "--armor", "--local-user", key, "--detach-sign",
                            "--output", path + ".asc", path], check=True)
            print(f"signed {path}.asc")
        else:
            print(f"built {path} (unsigned: set RELEASE_KEY to sign)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
