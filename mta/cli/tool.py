"""sendmail-py's own command: ``sendmail-py check`` (the migration report, mta.check)."""

from __future__ import annotations

import sys

import click


@click.group()
def main() -> None:
    """sendmail-py's own commands."""


@main.command()
@click.option("-C", "cf", default="/etc/mail/sendmail.cf", show_default=True, help="the MTA configuration")
@click.option("--mc", default=None, help="the m4 source (default: the .mc beside the cf)")
@click.option("--submit", default=None, help="also judge this submit.cf")
def check(cf: str, mc: str | None, submit: str | None) -> None:
    """List each FEATURE, option, map and mailer of /etc/mail: honoured, honoured differently
    (how), or not implemented; exit 1 when something is not implemented."""
    from mta import check as checker

    try:
        text, missing = checker.report(cf, mc)
        if submit:
            more, more_missing = checker.report(submit, "")
            text, missing = text + more, missing + more_missing
    except OSError as exc:
        click.echo(f"sendmail-py check: {exc.filename}: {exc.strerror}", err=True)
        sys.exit(78)
    click.echo(text, nl=False)
    sys.exit(1 if missing else 0)
