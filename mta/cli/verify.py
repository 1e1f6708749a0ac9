"""mta-verify: check a release's detached OpenPGP signature, as admins do for sendmail tarballs.

    mta-verify FILE [SIG] [--key KEYFILE | --keyring DIR] [--trust]

SIG defaults to FILE.asc, then FILE.sig.  Exit codes: mta.pgp.VERDICTS (0 good), 64 usage,
66 a file is missing, 69 gpg is not installed.
"""

from __future__ import annotations

import os
import sys

import click

from mta import errors


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("file", type=click.Path(dir_okay=False))
@click.argument("sig", required=False, type=click.Path(dir_okay=False))
@click.option("--key", "key_file", type=click.Path(dir_okay=False), help="public key file to trust for this check")
@click.option("--keyring", type=click.Path(file_okay=False), help="an existing GnuPG home to check against")
@click.option("--trust", is_flag=True, help="accept (and, with --keyring, certify) the signer's key")
def command(file: str, sig: str | None, key_file: str | None, keyring: str | None, trust: bool) -> int:
    """Verify FILE against its detached signature SIG."""
    from mta import pgp

    if key_file and keyring:
        raise click.UsageError("give --key or --keyring, not both")
    if not key_file and not keyring:
        raise click.UsageError("give the signing key with --key KEYFILE, or a keyring with --keyring DIR")
    if sig is None:
        sig = next((file + ext for ext in (".asc", ".sig") if os.path.exists(file + ext)), file + ".asc")
    verdict = pgp.verify(file, sig, key_file=key_file, keyring=keyring, trust=trust)
    click.echo(verdict.report(file))
    return verdict.exitcode


def main() -> None:
    try:
        code = command.main(standalone_mode=False)
    except click.UsageError as exc:
        click.echo(f"mta-verify: {exc.format_message()}", err=True)
        click.echo("usage: mta-verify FILE [SIG] [--key KEYFILE | --keyring DIR] [--trust]", err=True)
        sys.exit(errors.EX_USAGE)
    except click.Abort:
        sys.exit(errors.EX_TEMPFAIL)
    except errors.MTAError as exc:
        click.echo(f"mta-verify: {exc.text}", err=True)
        sys.exit(exc.exitcode)
    except Exception as exc:  # the edge: no traceback reaches the user
        click.echo(f"mta-verify: internal error: {type(exc).__name__}: {exc}", err=True)
        sys.exit(errors.EX_SOFTWARE)
    sys.exit(code if isinstance(code, int) else 0)
