"""``orderhealth credit-report | credit-verify | credit-keygen``: finance's evidence for banks."""

from __future__ import annotations

import os
from datetime import date
from pathlib import Path
from typing import Annotated

import typer
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn
from rich.table import Table

from dataflows.settings import KNOWN_DIMENSIONS
from orderhealth.cli_common import DEFAULT_LAKEHOUSE, CliError, Lakehouse, console, resolve_root

__all__ = ["DEMO_SIGNING_KEY", "ensure_demo_key", "register"]

#: Where ``orderhealth demo`` keeps the key it generates (beside the demo lakehouse).
DEMO_SIGNING_KEY = Path("data/keys/credit-signing-key.pem")

#: Steps a report goes through (for the progress bar).
_STEPS = 9


def ensure_demo_key(path: Path = DEMO_SIGNING_KEY) -> tuple[Path, bool]:
    """The demo's signing key, generated (mode 0600) if missing; (path, created)."""
    from orderhealth.credit.signing import generate_key

    if path.exists():
        return path, False
    generate_key(path)
    return path, True


def _signing_key(path: Path | None) -> tuple[Ed25519PrivateKey, str]:
    from orderhealth.credit.signing import load_private_key

    if path is not None:
        return load_private_key(path=path), str(path)
    if pem := os.environ.get("ORDERHEALTH_SIGNING_KEY"):
        return load_private_key(pem=pem), "ORDERHEALTH_SIGNING_KEY"
    if DEMO_SIGNING_KEY.exists():
        console.print(
            f"[yellow]Signing with the demo key {DEMO_SIGNING_KEY}[/] (made by `orderhealth "
            "demo`); for real reports pass --signing-key or set ORDERHEALTH_SIGNING_KEY_FILE."
        )
        return load_private_key(path=DEMO_SIGNING_KEY), str(DEMO_SIGNING_KEY)
    raise CliError(
        "no signing key: pass --signing-key FILE (or set ORDERHEALTH_SIGNING_KEY_FILE or "
        "ORDERHEALTH_SIGNING_KEY); create one with: orderhealth credit-keygen KEY.pem"
    )


def _pseudonym_key(enabled: bool, path: Path | None) -> bytes | None:
    if not enabled:
        return None
    if path is not None:
        try:
            return path.read_bytes().strip()
        except OSError as err:
            raise CliError(f"pseudonymisation key {path}: {err.strerror}") from err
    if secret := os.environ.get("ORDERHEALTH_PSEUDONYM_KEY"):
        return secret.encode()
    raise CliError(
        "--pseudonymise needs a key: --pseudonym-key-file FILE or ORDERHEALTH_PSEUDONYM_KEY "
        "(keep it: it is what links a pseudonym back to an order)"
    )


def _fmt(value: float | None, pct: bool = False) -> str:
    if value is None:
        return "n/a"
    return f"{100 * value:.2f}%" if pct else f"{value:+.2f} h"


def credit_report(
    subject_type: Annotated[
        str,
        typer.Option(
            "--subject-type", help=f"Subject: {', '.join(KNOWN_DIMENSIONS)} (all = the company)."
        ),
    ] = "all",
    subject_id: Annotated[
        str, typer.Option("--subject-id", help="The subject's id (all for the company).")
    ] = "all",
    start: Annotated[
        str | None, typer.Option("--from", help="First day, YYYY-MM-DD (default: first data).")
    ] = None,
    end: Annotated[
        str | None, typer.Option("--to", help="Last day, YYYY-MM-DD (default: last final day).")
    ] = None,
    out: Annotated[Path, typer.Option("--out", help="Directory to write the report to.")] = Path(
        "data/credit-report"
    ),
    lakehouse: Lakehouse = DEFAULT_LAKEHOUSE,
    signing_key: Annotated[
        Path | None,
        typer.Option(
            "--signing-key",
            envvar="ORDERHEALTH_SIGNING_KEY_FILE",
            help="Ed25519 private key (PEM, mode 0600).",
        ),
    ] = None,
    exclude_unclean: Annotated[
        bool,
        typer.Option(
            "--exclude-unclean",
            help="Leave out (and list) days that are quarantined, not gated or not final, "
            "instead of refusing.",
        ),
    ] = False,
    pseudonymise: Annotated[
        bool, typer.Option("--pseudonymise", help="Replace order ids by a keyed hash.")
    ] = False,
    pseudonym_key_file: Annotated[
        Path | None, typer.Option("--pseudonym-key-file", help="Secret for --pseudonymise.")
    ] = None,
) -> None:
    """Signed promise-fulfilment evidence for a bank: PDF, CSV/Parquet, signed manifest.

    Only gate-published facts are used; a period touching quarantined, ungated or
    provisional days is refused unless --exclude-unclean is given.
    """
    from orderhealth.credit.evidence import Subject
    from orderhealth.credit.report import build_report

    def day(text: str | None, option: str) -> date | None:
        try:
            return None if text is None else date.fromisoformat(text)
        except ValueError as err:
            raise CliError(f"{option} {text!r} is not a date (YYYY-MM-DD)") from err

    key, key_source = _signing_key(signing_key)
    secret = _pseudonym_key(pseudonymise, pseudonym_key_file)
    root = resolve_root(lakehouse)
    with Progress(
        SpinnerColumn(),
        TextColumn("{task.description:40s}"),
        BarColumn(),
        MofNCompleteColumn(),
        console=console,
        transient=True,
        disable=not console.is_terminal,
    ) as progress:
        task = progress.add_task("credit report", total=_STEPS)

        def step(what: str) -> None:
            progress.update(task, description=what, advance=1)

        result = build_report(
            root,
            Subject(subject_type, subject_id),
            out,
            key=key,
            start=day(start, "--from"),
            end=day(end, "--to"),
            exclude_unclean=exclude_unclean,
            pseudonym_key=secret,
            step=step,
        )
    h = result.headline
    table = Table(title=f"Credit evidence: {escape(str(Subject(subject_type, subject_id)))}")
    table.add_column("figure")
    table.add_column("value", justify="right")
    table.add_row("promised", f"{h.promised:,}")
    table.add_row("kept / late / cancelled", f"{h.kept:,} / {h.late:,} / {h.cancelled:,}")
    table.add_row(
        "kept rate (95% Wilson)",
        f"{_fmt(h.kept_rate, True)} ({_fmt(h.kept_rate_ci_low, True)}"
        f"-{_fmt(h.kept_rate_ci_high, True)})",
    )
    table.add_row(
        "deviation p50 / p90 / p99",
        " / ".join(
            _fmt(v) for v in (h.deviation_hours_p50, h.deviation_hours_p90, h.deviation_hours_p99)
        ),
    )
    table.add_row(
        "stability (CV daily kept rate)",
        "n/a" if h.stability_cv is None else f"{h.stability_cv:.4f}",
    )
    if result.company is not None:
        table.add_row("company kept rate", _fmt(result.company.kept_rate, True))
    console.print(table)
    for line in result.excluded:
        console.print(f"[yellow]excluded[/] {escape(line)}")
    console.print(
        f"Wrote {result.out}/ (report.pdf, evidence.parquet, evidence.csv, daily_facts.csv, "
        f"manifest.json) in {result.seconds:.1f} s; signed with key {result.key_id} "
        f"from {escape(key_source)}."
    )
    public = Path(key_source).with_name(Path(key_source).name.removesuffix(".pem") + ".pub.pem")
    pin = f" --public-key {public}" if public.exists() else " --public-key COMPANY.pub.pem"
    console.print(f"Verify: orderhealth credit-verify {result.manifest}{pin}")


def credit_verify(
    manifest: Annotated[Path, typer.Argument(help="The report's manifest.json.")],
    public_key: Annotated[
        Path | None,
        typer.Option(
            "--public-key",
            envvar="ORDERHEALTH_CREDIT_PUBLIC_KEY",
            help="The company's Ed25519 public key (PEM); without it the key in the "
            "manifest is used and only its fingerprint tells who signed.",
        ),
    ] = None,
) -> None:
    """Check a credit report: signature, every file's SHA-256, and the figures themselves."""
    from orderhealth.credit.signing import load_public_key
    from orderhealth.credit.verify import verify_report

    if not manifest.is_file():
        raise CliError(f"{manifest}: no such file")
    expected = load_public_key(public_key) if public_key is not None else None
    checks = verify_report(manifest, expected)
    table = Table(title=f"credit-verify {escape(str(manifest))}")
    table.add_column("check")
    table.add_column("result")
    table.add_column("detail")
    for c in checks:
        table.add_row(c.name, "[green]ok[/]" if c.ok else "[bold red]FAILED[/]", escape(c.detail))
    console.print(table)
    failed = [c for c in checks if not c.ok]
    if failed:
        raise CliError(
            f"the report does NOT verify: {len(failed)} check(s) failed -- "
            + "; ".join(f"{c.name}: {c.detail}" for c in failed[:3])
        )
    if expected is None:
        console.print(
            "[yellow]Verified against the key embedded in the manifest.[/] Pin the company's "
            "public key with --public-key to be sure who signed it."
        )
    console.print("[bold green]Verified:[/] signature, digests and figures all check out.")


def credit_keygen(
    path: Annotated[Path, typer.Argument(help="Where to write the private key (PEM).")],
) -> None:
    """Create an Ed25519 signing key (mode 0600) and its public key (KEY.pub.pem)."""
    from orderhealth.credit.signing import generate_key, key_id, public_path

    if path.exists():
        raise CliError(f"{path} exists; refusing to overwrite a key")
    public = generate_key(path)
    console.print(
        f"Wrote {path} (private, mode 600) and {public_path(path)} (public; give it to the "
        f"bank). Key id {key_id(public)}."
    )


def register(app: typer.Typer) -> None:
    app.command("credit-report")(credit_report)
    app.command("credit-verify")(credit_verify)
    app.command("credit-keygen")(credit_keygen)
