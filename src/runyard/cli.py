"""The `runyard` command line: serve, worker, deploy, operations, run, runs, retry, cancel, sql, accounts, users,
auth."""

from __future__ import annotations

import os
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, BinaryIO

import pydantic
import sqlalchemy as sa
import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from runyard.api.schemas import RunPublic
from runyard.cli_backends import (
    LOGIN_EXPIRED,
    TOKEN_REFUSED,
    TOKEN_VARIABLE,
    URL_VARIABLE,
    Backend,
    HttpBackend,
    LocalBackend,
    Remote,
    SavedLogin,
    last_url,
    normal_url,
    remote,
    save_login,
    saved_login,
    token_lines,
)
from runyard.client import ClientError, RunyardClient
from runyard.client import login as request_token
from runyard.domain.statuses import RunStatus, RunType
from runyard.errors import ConfigError, InvalidInput, RunyardError
from runyard.operations.loader import check_environment, load_specs_with_sources
from runyard.runtime import Runtime, open_store
from runyard.services import accounts as account_service
from runyard.services.deploy_changes import DeployAction, FieldChange
from runyard.services.export_format import without_header
from runyard.services.listing import RUN_PAGE_SIZE_MAX
from runyard.services.operations import (
    OperationFilter,
    OperationState,
    known_type,
    preview_deploy,
)
from runyard.services.operations import deploy as deploy_specs
from runyard.services.sql_explorer import cell_text
from runyard.settings import Settings
from runyard.store import migrate

try:  # Typer 0.2x carries its own copy of Click; older Typers raise Click's own exceptions
    from typer._click import exceptions as click_errors
except ImportError:  # pragma: no cover - with typer < 0.20
    from click import exceptions as click_errors  # type: ignore[no-redef]

app = typer.Typer(
    help="runyard: run data operations and watch them run.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
db_app = typer.Typer(help="The runs database.", no_args_is_help=True)
accounts_app = typer.Typer(help="Accounts.", no_args_is_help=True)
users_app = typer.Typer(help="Users.", no_args_is_help=True)
runs_app = typer.Typer(help="List runs, or show one with `runs show ID`.", invoke_without_command=True)
auth_app = typer.Typer(help="Your login's token, for scripts: `auth get-token`.", no_args_is_help=True)
operations_app = typer.Typer(
    help="List operations, or change their state: `operations activate|deactivate|archive ID`.",
    invoke_without_command=True,
)
app.add_typer(db_app, name="db")
app.add_typer(operations_app, name="operations")
app.add_typer(accounts_app, name="accounts")
app.add_typer(users_app, name="users")
app.add_typer(runs_app, name="runs")
app.add_typer(auth_app, name="auth")

_WIDTH = None if sys.stdout.isatty() else 160  # pipes and CI logs get wide tables instead of wrapped cells
out = Console(highlight=False, soft_wrap=True, width=_WIDTH)
err = Console(stderr=True, highlight=False, soft_wrap=True)

_STATUS_STYLE = {
    RunStatus.COMPLETED: "green",
    RunStatus.COMPLETED_WITH_ERRORS: "yellow",
    RunStatus.FAILED: "red",
    RunStatus.CANCELED: "magenta",
    RunStatus.REJECTED: "magenta",
}


def _settings() -> Settings:
    try:
        return Settings()
    except pydantic.ValidationError as error:
        first = error.errors()[0]
        field = "RUNYARD_" + str(first["loc"][0]).upper() if first["loc"] else "settings"
        raise ConfigError(first["msg"], field=field) from None


def _runtime() -> Runtime:
    settings = _settings()
    return Runtime(settings, open_store(settings))


@contextmanager
def _backend() -> Iterator[Backend]:
    settings = _settings()
    found = remote(settings.home)
    if found is None:
        yield LocalBackend(Runtime(settings, open_store(settings)), out)
        return
    with RunyardClient(found.url, found.token, auth_hint=found.auth_hint) as client:
        yield HttpBackend(client, out)


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Create or upgrade the runs database to the latest schema, and prepare a PostgreSQL warehouse."""
    settings = _settings()
    store = open_store(settings, upgrade=False)
    before = migrate.current_revision(store)
    migrate.upgrade(store)
    after = migrate.current_revision(store)
    out.print(f"runs database at revision {after}" + ("" if before == after else f" (was {before or 'empty'})"))
    from runyard.warehouse.provider import prepare_warehouse  # psycopg only when the warehouse is PostgreSQL

    prepared = prepare_warehouse(settings.resolved_warehouse_url)
    if prepared is not None:
        out.print(prepared)
    boot = account_service.bootstrap_admin(store, _admin_password(settings))
    _print_bootstrap(boot)


def _admin_password(settings: Settings) -> str | None:
    return settings.admin_password.get_secret_value() if settings.admin_password else None


def _print_bootstrap(boot: account_service.Bootstrap) -> None:
    if boot.generated_password:
        out.print(
            f"created account default; administrator login: {boot.login}  password: {boot.generated_password}"
            "  (shown once)"
        )
    elif boot.created:
        out.print(f"created account default; administrator login: {boot.login} (password from RUNYARD_ADMIN_PASSWORD)")


_ENV_OPTION = typer.Option("--env", "--environment", help="The environment (DEV, PROD, ...)")
_DRY_RUN_VERBS = {
    DeployAction.CREATED: "would create",
    DeployAction.UPDATED: "would update",
    DeployAction.UNCHANGED: "unchanged",
}


@app.command()
def deploy(
    path: Annotated[Path, typer.Argument(help="A YAML or JSON file, or a folder of them")],
    environment: Annotated[
        str | None,
        typer.Option("--env", "--environment", help="Deploy every configuration to this environment (DEV, PROD, ...)"),
    ] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Show what would change; write nothing")] = False,
) -> None:
    """Create or update operations from configuration files (all of them, or none if one is wrong).

    Each operation is listed as created, updated (with the fields that changed) or unchanged; an update keeps the
    operation's id, state and runs (unless a file sets `activated` or `archived`)."""
    loaded = load_specs_with_sources(path, check_environment(environment) if environment else None)
    runtime = _runtime()
    sources, specs = [source for source, _ in loaded], [spec for _, spec in loaded]
    if not dry_run:
        for item in deploy_specs(runtime.store, specs, sources=sources):
            _print_deployed(item.action, item.operation_id, item.configuration_id, item.changes)
        return
    previews = preview_deploy(runtime.store, specs, sources=sources)
    for preview in previews:
        _print_deployed(preview.action, preview.operation_id, preview.configuration_id, preview.changes, dry_run=True)
    counted = {action: sum(1 for p in previews if p.action is action) for action in DeployAction}
    out.print(
        f"dry run: nothing was deployed ({counted[DeployAction.CREATED]} to create, "
        f"{counted[DeployAction.UPDATED]} to update, {counted[DeployAction.UNCHANGED]} unchanged)"
    )


def _print_deployed(
    action: DeployAction,
    operation_id: int | None,
    configuration_id: str,
    changes: tuple[FieldChange, ...],
    *,
    dry_run: bool = False,
) -> None:
    verb = _DRY_RUN_VERBS[action] if dry_run else action.value
    which = f"{operation_id} ({configuration_id})" if operation_id is not None else configuration_id
    out.print(f"{verb} operation {which}", markup=False)
    for change in changes:
        out.print(f"  {change}", markup=False)


@app.command("login")
def login_command(
    login: Annotated[str, typer.Option("--login", prompt=True, help="Your login")],
    password: Annotated[str, typer.Option(prompt=True, hide_input=True, help="Asked for when not given")],
    url: Annotated[str | None, typer.Option(help="The server: default RUNYARD_URL, else the last login's")] = None,
) -> None:
    """Log in to a runyard server: run, runs, retry and cancel then go through it (for about 10 minutes)."""
    home = _settings().home
    server = normal_url(url or os.environ.get(URL_VARIABLE) or last_url(home))
    path = save_login(home, SavedLogin(url=server, token=request_token(server, login, password)))
    out.print(f"logged in to {server} as {login}; saved in {path}")


@auth_app.command("get-token")
def get_token() -> None:
    """Print your login's token for scripts (spec 003): seven lines, the last `User token : <token>`.

    TOKEN=$(runyard auth get-token | awk '/User token :/ {print $4}') then send `Authorization: Bearer $TOKEN`.
    The token is the one `runyard login` saved (or RUNYARD_TOKEN), checked with the server first."""
    settings = _settings()
    found = remote(settings.home)
    if found is None:
        raise ClientError(f"not logged in: run `runyard login` (or set {URL_VARIABLE} and {TOKEN_VARIABLE})")
    with RunyardClient(found.url, found.token, auth_hint=found.auth_hint) as client:
        owner = client.whoami()
    for line in token_lines(found, owner, datetime.now(UTC)):
        out.print(line, markup=False, emoji=False, highlight=False)


_TYPE_OPTION = typer.Option("--type", help="Only this configuration type (api-to-table, tasks, ...)")
_STATE_OPTION = typer.Option("--state", help="Only this state: active, inactive or archived")
_ARCHIVED_OPTION = typer.Option("--archived", help="Without --state: archived operations too")


@operations_app.callback()
def operations(
    ctx: typer.Context,
    configuration_type: Annotated[str | None, _TYPE_OPTION] = None,
    environment: Annotated[str | None, _ENV_OPTION] = None,
    state: Annotated[str | None, _STATE_OPTION] = None,
    archived: Annotated[bool, _ARCHIVED_OPTION] = False,
) -> None:
    """List operations (archived ones only with --archived or --state archived)."""
    if ctx.invoked_subcommand is None:
        _list_operations(configuration_type, environment, state, archived)


@operations_app.command("list")
def operations_list(
    configuration_type: Annotated[str | None, _TYPE_OPTION] = None,
    environment: Annotated[str | None, _ENV_OPTION] = None,
    state: Annotated[str | None, _STATE_OPTION] = None,
    archived: Annotated[bool, _ARCHIVED_OPTION] = False,
) -> None:
    """List operations (archived ones only with --archived or --state archived)."""
    _list_operations(configuration_type, environment, state, archived)


def _list_operations(
    configuration_type: str | None, environment: str | None, state: str | None, archived: bool
) -> None:
    where = OperationFilter(
        configuration_type=known_type(configuration_type) if configuration_type else None,
        environment=check_environment(environment) if environment else None,
        state=_state(state) if state else None,
        include_archived=archived,
    )
    with _backend() as backend:
        found = backend.operations(where)
    table = Table("ID", "Operation", "Type", "Environment", "State", "Updated", box=None)
    several_accounts = len({item.account for item in found}) > 1
    if several_accounts:
        table.add_column("Account")
    for item in found:
        cells = [str(item.id), escape(item.configuration_id), item.configuration_type, item.environment]
        cells += [item.state.label, _when(item.updated_at)]
        table.add_row(*cells, *([escape(item.account)] if several_accounts else []))
    out.print(table)
    out.print(f"{len(found)} operation{'' if len(found) == 1 else 's'}")


def _state(value: str) -> OperationState:
    try:
        return OperationState(value)
    except ValueError:
        allowed = ", ".join(state.value for state in OperationState)
        raise InvalidInput("--state", f"{value[:40]!r} is not a state; use one of: {allowed}") from None


_OPERATION_ARGUMENT = typer.Argument(help="Operation id or configuration_id")


@operations_app.command("activate")
def operations_activate(
    operation: Annotated[str, _OPERATION_ARGUMENT], environment: Annotated[str | None, _ENV_OPTION] = None
) -> None:
    """Activate an operation (it can be launched again); unarchives it too (administrators)."""
    _set_state(operation, environment, activated=True, archived=False)


@operations_app.command("deactivate")
def operations_deactivate(
    operation: Annotated[str, _OPERATION_ARGUMENT], environment: Annotated[str | None, _ENV_OPTION] = None
) -> None:
    """Deactivate an operation: launches are refused, runs under way go on; unarchives it too (administrators)."""
    _set_state(operation, environment, activated=False, archived=False)


@operations_app.command("archive")
def operations_archive(
    operation: Annotated[str, _OPERATION_ARGUMENT], environment: Annotated[str | None, _ENV_OPTION] = None
) -> None:
    """Archive an operation: deactivated and out of the default lists; its runs stay readable (administrators)."""
    _set_state(operation, environment, activated=False, archived=True)


def _set_state(ref: str, environment: str | None, *, activated: bool, archived: bool) -> None:
    with _backend() as backend:
        found = backend.find(ref, check_environment(environment) if environment else None)
        changed = backend.set_status(found.id, activated, archived)
    which = f"operation {changed.id} ({changed.configuration_id}, {changed.environment})"
    if changed.state is found.state:
        out.print(f"{which} was already {changed.state.label}", markup=False)
    else:
        out.print(f"{which} is now {changed.state.label} (was {found.state.label})", markup=False)


@app.command()
def run(
    operation: Annotated[str, typer.Argument(help="Operation id or configuration_id")],
    destructive: Annotated[bool, typer.Option("--destructive", help="Replace the tables")] = False,
    wait: Annotated[bool, typer.Option("--wait", help="Follow the run until it ends")] = False,
    environment: Annotated[
        str | None, typer.Option("--env", "--environment", help="Pick the operation of this environment")
    ] = None,
) -> None:
    """Launch a run of OPERATION."""
    run_type = RunType.DESTRUCTIVE if destructive else RunType.INCREMENTAL
    with _backend() as backend:
        launched = backend.launch(operation, run_type, environment)
        name, job = launched.configuration_id, launched.job_name
        out.print(f"run {launched.id} of {name} launched ({run_type.value}); job name {job}")
        if wait:
            _finish(backend.follow(launched.id))


@runs_app.callback()
def runs(
    ctx: typer.Context,
    operation: Annotated[str | None, typer.Option(help="Operation id or configuration_id")] = None,
    status: Annotated[RunStatus | None, typer.Option(help="Only runs with this status")] = None,
    run_type: Annotated[RunType | None, typer.Option("--type", help="incremental or destructive")] = None,
    limit: Annotated[int, typer.Option(min=1, max=RUN_PAGE_SIZE_MAX)] = 20,
) -> None:
    """List the most recent runs."""
    if ctx.invoked_subcommand is not None:
        return
    with _backend() as backend:
        items, total = backend.runs(operation, status, run_type, limit)
    table = Table("ID", "Operation", "Type", "Status", "Started", "Completed", "Duration", box=None)
    for item in items:
        table.add_row(
            str(item.id),
            escape(item.configuration_id),
            item.type,
            _status(item.status),
            _when(item.started_at),
            _when(item.completed_at),
            _duration(item.duration_seconds),
        )
    out.print(table)
    out.print(f"{len(items)} of {total} runs")


@runs_app.command("show")
def runs_show(run_id: Annotated[int, typer.Argument(help="The run's id")]) -> None:
    """One run and its tasks."""
    with _backend() as backend:
        view, task_views = backend.show(run_id)
    out.print(f"run {view.id}  {view.configuration_id}  {view.type}  {_status(view.status)}")
    out.print(f"job name {view.job_name}  run key {view.run_key}  trigger {view.trigger}")
    for label, value in (("retry of", view.retry_of), ("blocked by", view.blocked_by)):
        if value is not None:
            out.print(f"{label} run {value}")
    if view.message:
        out.print(view.message)
    table = Table("Task", "Status", "Attempt", "Records", "Duration", "Tables", "Messages", box=None)
    for task in task_views:
        tables = escape(", ".join(f"{table.name} ({table.record_count})" for table in task.tables))
        table.add_row(
            escape(task.name),
            task.status_label,
            str(task.attempt),
            str(task.records_processed),
            _duration(task.duration_seconds),
            tables,
            str(len(task.messages)),
        )
    out.print(table)
    for task in task_views:
        for message in task.messages:
            out.print(f"[{message.level}] {task.name}: {message.text}", markup=False)


@app.command()
def retry(
    run_id: Annotated[int, typer.Argument(help="The run to retry")],
    wait: Annotated[bool, typer.Option("--wait", help="Follow the new run until it ends")] = False,
) -> None:
    """Retry a Failed or Canceled run (the most recent of its operation)."""
    with _backend() as backend:
        view = backend.retry(run_id)
        out.print(f"run {view.id} launched as a retry of run {run_id}")
        if wait:
            _finish(backend.follow(view.id))


@app.command()
def cancel(run_id: Annotated[int, typer.Argument(help="The run to cancel")]) -> None:
    """Cancel a waiting or running run."""
    with _backend() as backend:
        view = backend.cancel(run_id)
    out.print(f"run {run_id} is {view.status_label}")


@app.command("sql")
def sql_command(
    query: Annotated[str | None, typer.Argument(help="The query: one SELECT, WITH or EXPLAIN")] = None,
    file: Annotated[
        Path | None, typer.Option("--file", "-f", help="Read the query from this file (- for standard input)")
    ] = None,
    limit: Annotated[
        int | None, typer.Option(min=1, help="At most this many rows (default and maximum: RUNYARD_SQL_ROW_LIMIT)")
    ] = None,
    csv_output: Annotated[bool, typer.Option("--csv", help="Print the rows as CSV (a header row first)")] = False,
    url: Annotated[str | None, typer.Option(help="The server: default RUNYARD_URL, else the saved login's")] = None,
) -> None:
    """Run a read-only query on your account's warehouse, through the server (operators and administrators).

    Prints the rows as a table with "N rows in X ms" (and a notice when there were more than the limit), or CSV
    with --csv. Ctrl+C stops the query on the server too."""
    text = _sql_text(query, file)
    found = _sql_remote(url)
    query_id = uuid.uuid4().hex
    with RunyardClient(found.url, found.token, auth_hint=found.auth_hint) as client:
        try:
            if csv_output:
                sys.stdout.write(client.sql_csv(text, limit=limit, query_id=query_id))
                return
            result = client.sql(text, limit=limit, query_id=query_id)
        except KeyboardInterrupt:
            with suppress(ClientError):
                client.stop_sql(query_id)
            err.print("error: stopped (the query was stopped on the server too)", markup=False)
            raise typer.Exit(130) from None
    table = Table(*(escape(column.name) for column in result.columns), box=None)
    for row in result.rows:
        table.add_row(*("[dim]NULL[/]" if value is None else escape(cell_text(value)) for value in row))
    out.print(table)
    rows = f"{result.row_count:,} row{'' if result.row_count == 1 else 's'}"
    out.print(f"{rows} in {result.elapsed_ms:,.1f} ms", markup=False)
    if result.truncated:
        out.print(
            f"truncated: the query has more rows than {result.row_count:,}; only the first {result.row_count:,} are "
            "shown (--limit asks for more, up to the server's RUNYARD_SQL_ROW_LIMIT)",
            markup=False,
        )


@app.command("export")
def export_command(
    view: Annotated[str, typer.Argument(help="A declared bi-view's view_name, or a warehouse table")],
    output: Annotated[
        Path, typer.Option("--output", "-o", help="The CSV file to write (- for standard output)")
    ] = Path("-"),
    from_date: Annotated[
        str | None, typer.Option("--from", help="Rows from this time on (yyyy-MM-ddTHH:mm:ss, UTC)")
    ] = None,
    to_date: Annotated[str | None, typer.Option("--to", help="Rows before this time (excluded)")] = None,
    page_size: Annotated[int | None, typer.Option(min=1, max=10_000, help="Rows a page (default 1,000)")] = None,
    url: Annotated[str | None, typer.Option(help="The server: default RUNYARD_URL, else the saved login's")] = None,
) -> None:
    """Export a view or table as one CSV file, paged through the server's BI Views v2 API (spec 004) with its
    continuation token. Shows the pages as they come; the file is complete only when the command succeeds."""
    found = _sql_remote(url)
    to_stdout = str(output) == "-"
    target = sys.stdout.buffer if to_stdout else _partial_file(output)
    lines = pages = 0
    total_rows: int | None = None
    try:
        with (
            RunyardClient(found.url, found.token, auth_hint=found.auth_hint) as client,
            Progress(
                TextColumn("[bold]{task.description}"),
                BarColumn(),
                TextColumn("{task.completed:,} pages · about {task.fields[lines]:,} lines"),
                TimeElapsedColumn(),
                console=err,
                disable=not err.is_terminal,  # a bar for a person watching, not for a log or a pipe
            ) as progress,
        ):
            bar = progress.add_task(f"export {view}", total=None, lines=0)
            for page in client.export_pages(view, from_date=from_date, to_date=to_date, page_size=page_size):
                data = page.data if page.number == 1 else without_header(page.data)
                target.write(data)
                pages, lines, total_rows = page.number, lines + data.count(b"\n"), page.total_rows
                progress.update(bar, completed=pages, total=page.total_pages, lines=lines)
    except BaseException:
        if not to_stdout:
            target.close()
            output.with_name(output.name + ".partial").unlink(missing_ok=True)
        raise
    if not to_stdout:
        target.close()
        output.with_name(output.name + ".partial").replace(output)
        rows = "" if total_rows is None else f"{total_rows:,} rows in "
        out.print(f"{rows}{pages:,} page{'' if pages == 1 else 's'} written to {output}", markup=False)


def _partial_file(output: Path) -> BinaryIO:
    """`<output>.partial`, renamed to `output` once every page is in it."""
    try:
        return output.with_name(output.name + ".partial").open("wb")
    except OSError as error:
        raise InvalidInput("--output", f"cannot write {output}: {error.strerror or error}") from None


def _sql_text(query: str | None, file: Path | None) -> str:
    if (query is None) == (file is None):
        raise InvalidInput("sql", "give the query, or --file with a file that holds it (not both)")
    if file is None:
        assert query is not None
        return query
    try:
        return sys.stdin.read() if str(file) == "-" else file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise InvalidInput("--file", f"cannot read {file}: {getattr(error, 'strerror', None) or error}") from None


def _sql_remote(url: str | None) -> Remote:
    """The server the query goes to: --url (with RUNYARD_TOKEN, or the login saved for it), else the mode rule's
    server. The warehouse is the server's: there is no direct mode."""
    home = _settings().home
    if url is None:
        found = remote(home)
        if found is None:
            raise ClientError(
                f"not logged in: run `runyard login` (or set {URL_VARIABLE} and {TOKEN_VARIABLE}); "
                "queries run on the server, which holds the warehouse"
            )
        return found
    server = normal_url(url)
    token = os.environ.get(TOKEN_VARIABLE, "").strip()
    if token:
        return Remote(server, token, TOKEN_REFUSED)
    saved = saved_login(home)
    if saved is None or saved.url != server:
        raise ClientError(f"not logged in to {server}: run `runyard login --url {server}` or set {TOKEN_VARIABLE}")
    return Remote(server, saved.token, LOGIN_EXPIRED)


@accounts_app.command("create")
def accounts_create(name: Annotated[str, typer.Argument(help="The account's name")]) -> None:
    """Create an account."""
    account_id = account_service.create_account(_runtime().store, name)
    out.print(f"created account {account_id} ({name})")


@users_app.command("create")
def users_create(
    account: Annotated[str, typer.Option(help="The account the user belongs to")],
    login: Annotated[str, typer.Option(help="Unique across accounts")],
    password: Annotated[str, typer.Option(prompt=True, hide_input=True, confirmation_prompt=True)],
    role: Annotated[str, typer.Option(help="administrator, operator or viewer")] = "viewer",
) -> None:
    """Create a user in an account."""
    user_id = account_service.create_user(_runtime().store, account=account, login=login, password=password, role=role)
    out.print(f"created user {user_id} ({login}, {role}) in account {account}")


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Address to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on")] = 8000,
    demo: Annotated[bool, typer.Option("--demo", help="Deploy and launch the demo operations")] = False,
) -> None:
    """Run the HTTP app, a worker pool and the scheduler in one process."""
    from runyard.serve import serve as run_server

    run_server(_settings(), host=host, port=port, demo=demo, console=out)


@app.command()
def worker(
    concurrency: Annotated[int | None, typer.Option(help="Task slots (default RUNYARD_WORKER_CONCURRENCY)")] = None,
) -> None:
    """Run a worker alone: it claims tasks from the runs database until stopped."""
    from runyard.serve import run_worker

    settings = _settings()
    if concurrency is not None:
        settings = settings.model_copy(update={"worker_concurrency": concurrency})
    run_worker(settings)


def _finish(final: RunPublic) -> None:
    out.print(f"run {final.id} ended {_status(final.status)}")
    if RunStatus(final.status) not in (RunStatus.COMPLETED, RunStatus.COMPLETED_WITH_ERRORS):
        raise typer.Exit(1)


def _status(value: str) -> str:
    status = RunStatus(value)
    style = _STATUS_STYLE.get(status)
    return f"[{style}]{status.label}[/]" if style else status.label


def _when(value: object) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S") if hasattr(value, "strftime") else ""


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return ""
    minutes, rest = divmod(round(seconds), 60)
    return f"{minutes}m{rest:02d}s" if minutes else f"{seconds:.1f}s"


def main() -> None:
    try:
        code = app(prog_name="runyard", standalone_mode=False)
    except click_errors.NoArgsIsHelpError as shown:  # `runyard` or `runyard db` alone: the help, as always
        shown.show()
        sys.exit(shown.exit_code)
    except click_errors.UsageError as error:  # an unknown command or option, a bad value, a missing argument
        err.print(f"error: {usage_problem(error)}", markup=False)
        sys.exit(USAGE_EXIT)
    except click_errors.ClickException as error:  # a file option that cannot be opened, say
        err.print(f"error: {_one_line(error.format_message())}", markup=False)
        sys.exit(error.exit_code)
    except typer.Abort:  # end of input at a prompt
        err.print("error: aborted", markup=False)
        sys.exit(1)
    except RunyardError as error:
        err.print(f"error: {error}", markup=False)
        sys.exit(1)
    except sa.exc.OperationalError as error:
        err.print(f"error: the runs database is unreachable: {str(error.orig).splitlines()[0]}", markup=False)
        sys.exit(1)
    except OSError as error:  # a port already in use, a folder that cannot be written...
        err.print(f"error: {error.strerror or error}" + (f": {error.filename}" if error.filename else ""), markup=False)
        sys.exit(1)
    sys.exit(code if isinstance(code, int) else 0)  # typer.Exit(n) comes back as n without standalone mode


USAGE_EXIT = 2  # Click's code for a command line it cannot use


def usage_problem(error: click_errors.UsageError) -> str:
    """Click's complaint on one line, naming the option or argument, and where the help is:
    `invalid value for '--status': 'bogus' is not one of 'waiting_to_start', ... (see runyard runs --help)`."""
    message = _one_line(error.format_message()).replace(": Value error, ", ": ").rstrip(".")
    where = error.ctx.command_path if error.ctx is not None else "runyard"
    return f"{message[:1].lower()}{message[1:]} (see {where} --help)"


def _one_line(text: str) -> str:
    return " ".join(text.split())


if __name__ == "__main__":
    main()
