"""``outbox forget``: ask the receiving service to delete this instance's data."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING
from urllib.parse import urlsplit, urlunsplit

import click

from outbox import store
from outbox.cli.context import CliContext, ConfigError
from outbox.cli.fmt import clip
from outbox.config import ENDPOINT, package_version
from outbox.contract import bearer

if TYPE_CHECKING:
    import httpx

#: Seconds to wait for the service to answer.
TIMEOUT = 10.0


def deletion_url(endpoint: str, instance_id: str) -> str:
    """``https://h/api/instances/heartbeat`` → ``https://h/api/instances/{instance_id}``."""
    parts = urlsplit(endpoint)
    path = parts.path.rstrip("/")
    if not path.endswith("/heartbeat"):
        raise ConfigError(
            f"cannot tell where to send the deletion from the endpoint {endpoint!r}: it does "
            "not end in /heartbeat; pass the heartbeat URL with --endpoint"
        )
    base = path[: -len("/heartbeat")]
    return urlunsplit((parts.scheme, parts.netloc, f"{base}/{instance_id}", "", ""))


def _answer(response: httpx.Response) -> str:
    try:
        return json.dumps(response.json(), separators=(", ", ": "))
    except ValueError:
        return clip(response.text, 300) or "(empty body)"


@click.command()
@click.option(
    "--endpoint",
    metavar="URL",
    help="The heartbeat URL; default HELIOS_TELEMETRY_ENDPOINT, else the Helios service.",
)
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
@click.pass_context
def forget(ctx: click.Context, endpoint: str | None, yes: bool) -> None:
    """Ask the receiving service to delete everything it holds for this instance.

    Sends DELETE {endpoint without /heartbeat}/{instance id}. The local outbox
    is not touched: `outbox disable` stops sending, `outbox purge --all`
    clears what is stored here.

    Example:

    \b
        outbox forget --yes
    """
    obj: CliContext = ctx.obj
    cfg = obj.config(endpoint=endpoint).require(ENDPOINT, "--endpoint")
    heartbeat_url = cfg.endpoint
    with obj.reading() as conn:
        instance = None if conn is None else store.existing_instance_id(conn)
        secret = None if conn is None else store.existing_secret(conn)
        org = None if conn is None else store.org_enabled(conn)
    if instance is None:
        click.echo(
            "this outbox has no instance id: no heartbeat was ever made from it, "
            "so the service holds nothing to forget"
        )
        return
    url = deletion_url(heartbeat_url, instance)
    import httpx  # here, not at the top: only this command needs it

    if not yes:
        question = f"Ask {urlsplit(url).netloc} to delete all data of instance {instance}?"
        try:
            agreed = click.confirm(question, default=False)
        except click.Abort:
            agreed = False
        if not agreed:
            click.echo("aborted: nothing was asked", err=True)
            ctx.exit(1)
    try:
        with httpx.Client(
            transport=obj.transport,
            timeout=TIMEOUT,
            headers={"User-Agent": f"helios-telemetry/{package_version()}"}
            | ({} if secret is None else {"Authorization": bearer(secret)}),
        ) as client:
            response = client.delete(url)
    except httpx.HTTPError as e:
        raise click.ClickException(
            f"could not reach {url} ({e or type(e).__name__}); check the network and the "
            "endpoint (--endpoint or HELIOS_TELEMETRY_ENDPOINT), then try again"
        ) from e
    code = response.status_code
    if code == 404:
        click.echo(f"the service has no data for this instance (HTTP 404 from {url})")
    elif code == 401:
        raise click.ClickException(
            f"the service refused (HTTP 401 from {url}): {_answer(response)}. It binds an "
            "instance to the secret of the outbox that sent its first heartbeat: only that "
            "outbox can ask for its deletion (an instance last heard from before secrets "
            "existed is bound by its next heartbeat)"
        )
    elif 200 <= code < 300:
        click.echo(f"the service deleted the data of instance {instance} (HTTP {code})")
        click.echo(f"its answer: {_answer(response)}")
    else:
        raise click.ClickException(
            f"the service did not delete anything: HTTP {code} from {url}: {_answer(response)}"
        )
    if cfg.decision(org).sending:
        click.echo(
            "telemetry is still on: the next heartbeat sends new counts under the same "
            "instance id; `outbox disable` stops it"
        )
