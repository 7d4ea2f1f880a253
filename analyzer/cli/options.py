"""What the commands share: progress on a terminal, one-line errors, the common options
(engine, format, login, TLS, verbose, output) and their checks."""

from __future__ import annotations

import itertools
import logging
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from analyzer.errors import EXIT_CODES, ReclaimError

F = TypeVar("F", bound=Callable[..., Any])


class ClickProgress:
    """Draws progress on stderr when it is a terminal; silent otherwise.

    A stage with a known total is a bar with `pos/total`; one without (a listing nobody can
    count in advance: blobs in a storage tree, repositories of a paged API) is click's
    length-less bar: a counter with a moving mark. Redraws are batched to at most one every
    REDRAW_SECONDS, so counting 100,000 blobs does not write 100,000 lines to the terminal;
    the final count is always drawn.
    """

    REDRAW_SECONDS = 0.1

    def __init__(self) -> None:
        self.enabled = sys.stderr.isatty()
        self._bar: Any = None
        self._pending = 0
        self._drawn_at = 0.0

    def stage(self, name: str, total: int | None = None) -> None:
        self.close()
        if self.enabled:
            label = f"{name:<14}"
            if total is None:
                # No length: click counts and animates instead of filling a bar.
                self._bar = click.progressbar(
                    itertools.count(), label=label, file=sys.stderr, show_pos=True
                )
            else:
                self._bar = click.progressbar(
                    length=total, label=label, file=sys.stderr, show_pos=True
                )
            self._bar.__enter__()
            self._drawn_at = time.monotonic()

    def advance(self, n: int = 1) -> None:
        if self._bar is None:
            return
        self._pending += n
        now = time.monotonic()
        if now - self._drawn_at >= self.REDRAW_SECONDS:
            self._flush(now)

    def _flush(self, now: float) -> None:
        if self._pending:
            self._bar.update(self._pending)
            self._pending = 0
        self._drawn_at = now

    def close(self) -> None:
        if self._bar is not None:
            self._flush(time.monotonic())
            self._bar.__exit__(None, None, None)
            self._bar = None


T = TypeVar("T")


def _step(progress: ClickProgress, name: str, fn: Callable[..., T], *args: Any) -> T:
    """One unit of work as a one-step stage: on a terminal the user sees which step runs."""
    progress.stage(name, 1)
    out = fn(*args)
    progress.advance()
    return out


def fail_cleanly(fn: F) -> F:
    """Turn library errors into one line on stderr and their exit code."""

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except ReclaimError as e:
            click.echo(f"reclaim: error: {e}", err=True)
            sys.exit(e.exit_code)
        except OSError as e:
            # Library code turns the I/O failures it expects into typed errors; any other
            # (a full disk under a log file, a vanished directory) is still one line, no trace.
            where = f"{e.filename}: " if e.filename else ""
            click.echo(f"reclaim: error: {where}{e.strerror or e}", err=True)
            sys.exit(1)

    wrapper.__name__ = fn.__name__
    wrapper.__doc__ = fn.__doc__
    return wrapper  # type: ignore[return-value]


def _engine_names() -> tuple[str, ...]:
    # The registry loads the engine models: only when a command line is checked or helped.
    from analyzer.engines import registry

    return registry.names()


class _LazyChoice(click.Choice):
    """A click.Choice whose choices are computed when first needed (help, parsing), not at
    import: they come from the engine registry, which loads the models."""

    def __init__(self, choices: Callable[[], list[str]]) -> None:
        self._load = choices
        self._loaded: list[str] | None = None
        super().__init__([])

    @property  # type: ignore[override]
    def choices(self) -> list[str]:
        if self._loaded is None:
            self._loaded = self._load()
        return self._loaded

    @choices.setter
    def choices(self, value: object) -> None:  # click.Choice.__init__ sets it: computed here
        pass


def _gc_types() -> list[str]:
    from analyzer.engines import registry

    return [t for spec in registry.specs() for t in spec.gc_types]


class EngineChoice(click.ParamType):
    """--engine: one of the registered engines, checked when the command line is parsed (an
    engine registered after import, a test's own, is accepted too)."""

    name = "engine"

    def __init__(self, names: Callable[[], tuple[str, ...]] = _engine_names) -> None:
        self.names = names

    def get_metavar(self, param: click.Parameter, ctx: click.Context | None = None) -> str:
        return f"[{'|'.join(self.names())}]"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> str:
        if value in self.names():
            return str(value)
        self.fail(f"{value!r} is not one of {', '.join(map(repr, self.names()))}.", param, ctx)


def gc_type_choice() -> click.Choice:
    """--gc-type: every collection type an engine takes (DigitalOcean's three)."""
    return _LazyChoice(_gc_types)


ENGINE_HELP = "The garbage collector that will run."
DELETE_UNTAGGED_HELP = "Model `garbage-collect --delete-untagged` (-m): untagged manifests go too."


def engine_option(
    help: str = ENGINE_HELP,
    *,
    required: bool = True,
    names: Callable[[], tuple[str, ...]] = _engine_names,
    default: str | None = None,
) -> Callable[[F], F]:
    """--engine: a registered engine (`names` narrows the choice, as `gc` does to those with a
    runner)."""
    shown: dict[str, Any] = {} if default is None else {"default": default, "show_default": True}
    return click.option("--engine", type=EngineChoice(names), required=required, help=help, **shown)


def delete_untagged_option(help: str = DELETE_UNTAGGED_HELP) -> Callable[[F], F]:
    """--delete-untagged: the collector's -m, modelled or run."""
    return click.option("--delete-untagged", is_flag=True, help=help)


def gc_type_option(help: str, *decls: str) -> Callable[[F], F]:
    """--gc-type (or the `decls` given, `gc --type`): one of DigitalOcean's collection types."""
    return click.option(*(decls or ("--gc-type",)), type=gc_type_choice(), help=help)


def emit(doc: Any, fmt: str, **renderers: Callable[[], str]) -> None:
    """Print a result in the format asked for: `doc` (a JSON document) as JSON, otherwise the
    renderer named by the format (table=..., markdown=...), called only when chosen."""
    if fmt == "json":
        from analyzer.output import write_indented

        write_indented(doc, lambda text: click.echo(text, nl=False))
        click.echo()
    else:
        click.echo(renderers[fmt]())


def format_option(*choices: str) -> Callable[[F], F]:
    return click.option(
        "--format",
        "fmt",
        type=click.Choice(choices),
        default=choices[0],
        show_default=True,
        help="Output format.",
    )


def registry_login_options(fn: F) -> F:
    """--username / --password-stdin / --docker-config, shared by every command that logs in."""
    fn = click.option(
        "--docker-config",
        type=click.Path(dir_okay=False),
        help="A docker config.json for credentials (default: $DOCKER_CONFIG or ~/.docker).",
    )(fn)
    fn = click.option(
        "--password-stdin",
        is_flag=True,
        help="Read the password from stdin (else env RECLAIM_PASSWORD, else docker config.json).",
    )(fn)
    return click.option(
        "--username", envvar="RECLAIM_USERNAME", help="Registry user (env RECLAIM_USERNAME)."
    )(fn)


def registry_credentials(username: str | None, password_stdin: bool) -> Any:
    """Credentials from the login options; the password never comes from the command line."""
    from analyzer.oci.auth import Credentials

    if not username:
        return None
    password = (
        sys.stdin.readline().rstrip("\n") if password_stdin else os.environ.get("RECLAIM_PASSWORD")
    )
    return Credentials(username, password)


timeout_option = click.option(
    "--timeout",
    type=click.FloatRange(0.1),
    default=30.0,
    show_default=True,
    help="Seconds one request may take (to a registry: connection to last byte, its retries "
    "within 3 x this; a credential helper as long).",
)


def tls_options(fn: F) -> F:
    """--ca-cert / --insecure: TLS for registries, verified by default."""
    fn = click.option(
        "--insecure",
        is_flag=True,
        help="Do not verify the registry's TLS certificate (loudly warned; prefer --ca-cert). "
        "Plain HTTP is used only for an http:// URL, with or without this.",
    )(fn)
    return click.option(
        "--ca-cert",
        type=click.Path(dir_okay=False),
        metavar="FILE",
        help="Trust the CA certificate(s) in FILE (PEM) for the registry's TLS, instead of the "
        "system's CAs (e.g. a self-signed registry).",
    )(fn)


def verbose_option(fn: F) -> F:
    return click.option(
        "-v",
        "--verbose",
        is_flag=True,
        help="Show each request on stderr: method, URL, status, time (secrets redacted).",
    )(fn)


class _EchoHandler(logging.Handler):
    """Log records as lines on stderr (looked up per record, so CliRunner's capture works)."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            click.echo(f"reclaim: {self.format(record)}", err=True)
        except Exception:
            self.handleError(record)


def configure_logging(verbose: bool) -> None:
    """The library logs; the CLI decides: with -v its INFO records (requests, retries) go to
    stderr."""
    logger = logging.getLogger("analyzer")
    for handler in [h for h in logger.handlers if isinstance(h, _EchoHandler)]:
        logger.removeHandler(handler)
    if verbose:
        logger.addHandler(_EchoHandler())
    logger.setLevel(logging.INFO if verbose else logging.WARNING)


def tls_verify(url: str | None, ca_cert: str | None, insecure: bool) -> bool | str:
    """requests' `verify` for --ca-cert/--insecure; --insecure is warned about, loudly."""
    from analyzer.oci.client import tls_verify as verify_for

    verify = verify_for(ca_cert, insecure)
    if insecure:
        import warnings

        from urllib3.exceptions import InsecureRequestWarning

        # Said once, here, instead of urllib3's warning on every connection.
        warnings.simplefilter("ignore", InsecureRequestWarning)
        click.echo(
            f"reclaim: WARNING: --insecure: the TLS certificate of {url or 'the registry'} is NOT "
            "verified; anyone on the network path can impersonate the registry and read the "
            "credentials sent to it",
            err=True,
        )
    return verify


api_url_option = click.option(
    "--api-url",
    envvar="DIGITALOCEAN_API_URL",
    metavar="URL",
    help="DigitalOcean API base URL (env DIGITALOCEAN_API_URL; default the public API).",
)

force_option = click.option(
    "--force",
    is_flag=True,
    help="Replace the -o file if it exists (without it an existing file is refused). It "
    "forces nothing else.",
)


def snapshot_output_options(required: bool) -> Callable[[F], F]:
    """-o/--output SNAPSHOT and --force, for the commands that write a snapshot."""

    def decorate(fn: F) -> F:
        fn = click.option("--force", is_flag=True, help="Replace an existing snapshot at -o.")(fn)
        return click.option(
            "-o",
            "--output",
            required=required,
            type=click.Path(),
            help="Snapshot directory to write.",
        )(fn)

    return decorate


def history_option(fn: F) -> F:
    return click.option(
        "--history",
        "history_dir",
        type=click.Path(file_okay=False),
        envvar="RECLAIM_HISTORY",
        help="Directory of run records (env RECLAIM_HISTORY; "
        "default ~/.local/share/reclaim/history).",
    )(fn)


def history_directory(history_dir: str | None) -> str:
    """--history, else the default record directory."""
    from analyzer.history import default_history_dir

    return history_dir or str(default_history_dir())


def check_output_file(path: str | None, force: bool) -> None:
    """Refuse an -o that exists (without --force) before any work is done."""
    from analyzer.output import check_output

    if path:
        check_output(path, force)


def write_output(
    path: str, data: dict[str, Any], force: bool, recorded_in: Path | None = None
) -> None:
    """Write an -o JSON file atomically; refuse to replace one without --force. When the data is
    also in the history (`recorded_in`), a failure says where it can still be found."""
    from analyzer.errors import OutputError
    from analyzer.output import write_json

    try:
        write_json(path, data, force)
    except OutputError as e:
        if recorded_in is None:
            raise
        raise type(e)(f"{e}; the outcome is recorded in the history ({recorded_in})") from e


def record_outcome(
    engine: Any, progress: Any, history_dir: str | None, output: str | None, force: bool
) -> Any:
    """Run a collector to its end with its outcome recorded in the history, and at -o (a failed
    run's outcome too, when it has one); returns the outcome."""
    from analyzer.engines.base import run_engine
    from analyzer.errors import EngineError
    from analyzer.history import KIND_OUTCOME, write_record
    from analyzer.outcome import Outcome

    history = Path(history_directory(history_dir))
    try:
        outcome = run_engine(
            engine,
            progress=progress,
            record=lambda o: write_record(history, KIND_OUTCOME, o.to_dict()),
            log_dir=history / "logs",
        )
    except EngineError as e:  # ConfirmationRequired too: its message names what would run
        if output and isinstance(e.outcome, Outcome):
            write_output(output, e.outcome.to_dict(), force, history)
        raise
    if output:
        write_output(output, outcome.to_dict(), force, history)
    return outcome


def exit_codes_help() -> str:
    """The exit-code table of `reclaim --help`, made from errors.EXIT_CODES."""
    rows = [f"  {code:<4} {meaning}" for code, meaning in EXIT_CODES.items()]
    return "\b\nExit codes:\n" + "\n".join(rows)
