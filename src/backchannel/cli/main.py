"""The ``backchannel`` command.

Every action of a station is a subcommand. Commands that act on a line talk to the running
station through its control socket (``backchannel station run`` must be running); ``init``,
``station run``, ``relay serve`` and ``demo`` start things themselves. Every command takes
``--json`` for machines. Errors print one line naming the problem and what to do; ``--debug``
shows the traceback as well.
"""

from __future__ import annotations

import json
import sys
import traceback
from pathlib import Path

import click

from backchannel.cli import lines as line_commands
from backchannel.cli import messages as message_commands
from backchannel.cli import record as record_commands
from backchannel.cli import render
from backchannel.cli.common import (
    DEFAULT_HOME,
    PASSPHRASE_ENV,
    State,
    emit,
    json_option,
    pass_state,
    passphrase_option,
    read_passphrase,
)
from backchannel.cli.home import require_station
from backchannel.errors import BackchannelError
from backchannel.station.private import private_umask

__all__ = ["DEFAULT_HOME", "PASSPHRASE_ENV", "cli", "main", "read_passphrase"]


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--home",
    type=click.Path(path_type=Path, file_okay=False),
    default=DEFAULT_HOME,
    show_default=True,
    help="The station directory (or $BACKCHANNEL_HOME).",
)
@click.option("--debug", is_flag=True, help="Show tracebacks on errors.")
@click.version_option(package_name="backchannel")
@click.pass_context
def cli(ctx: click.Context, home: Path, debug: bool) -> None:
    """backchannel: a secure, discreet, always-on line between two stations."""
    private_umask()  # whatever this command writes (station files, exports) is for this user only
    ctx.obj = State(home.expanduser(), debug)


for _command in (*line_commands.COMMANDS, *message_commands.COMMANDS):
    cli.add_command(_command)


# ---- station setup -----------------------------------------------------------------------


@cli.command()
@click.option("--name", required=True, help="This station's name, shown to the other side (e.g. washington).")
@passphrase_option
@json_option
@pass_state
def init(state: State, name: str, passphrase_file: Path | None, as_json: bool) -> None:
    """Create a new station: identity keys, keystore and database."""
    from backchannel.station.station import Station

    Station.init(state.home, name, read_passphrase(passphrase_file, confirm=True))
    emit(
        as_json,
        {"home": str(state.home), "name": name},
        lambda v: render.console.print(
            f"Station [bold]{render.lit(name)}[/] created in {render.lit(state.home)}"
        ),
    )


@cli.command()
@passphrase_option
@click.option(
    "--new-passphrase-file",
    type=click.Path(path_type=Path, dir_okay=False),
    help="Read the new passphrase from this file (else it is asked twice on the terminal).",
)
@json_option
@pass_state
def passphrase(
    state: State, passphrase_file: Path | None, new_passphrase_file: Path | None, as_json: bool
) -> None:
    """Change the keystore passphrase (the station may keep running; the new one is for next start)."""
    from backchannel.station.keystore import MIN_PASSPHRASE, change_passphrase, check_new_passphrase
    from backchannel.station.station import KEYSTORE

    require_station(state.home)
    keystore = state.home / KEYSTORE
    old = read_passphrase(passphrase_file, prompt="Current passphrase")
    new = read_passphrase(
        new_passphrase_file,
        confirm=True,
        prompt=f"New passphrase (at least {MIN_PASSPHRASE} characters)",
        use_env=False,
    )
    check_new_passphrase(new)
    change_passphrase(keystore, old, new)
    emit(
        as_json,
        {"home": str(state.home), "changed": True},
        lambda v: render.console.print(
            f"Passphrase changed for the station in {state.home}; use the new one from the next start."
        ),
    )


@cli.group()
def station() -> None:
    """Run this station."""


@station.command("run")
@passphrase_option
@click.option(
    "--config",
    "config_file",
    type=click.Path(path_type=Path, dir_okay=False),
    help="Station config file (default: station.toml in the station directory).",
)
@click.option("--relay", "relays", multiple=True, help="Default relay for new invitations (repeatable).")
@click.option("--link-test-interval", type=float, help="Seconds between link tests (default 3600).")
@click.option(
    "--cover-rate",
    type=float,
    help="Frames per second each circuit sends, cover or real (default 1; 0: cover traffic off).",
)
@click.option("--alarm-command", help="Run this command with each alarm as JSON on stdin.")
@click.option("--alarm-webhook", help="POST each alarm as JSON to this URL.")
@click.option("--log-level", default="WARNING", show_default=True)
@click.option(
    "--console",
    "console_address",
    metavar="HOST:PORT|off",
    help="Serve the operator console here (default 127.0.0.1:7480; port 0 picks a free one).",
)
@click.option(
    "--insecure-plain",
    is_flag=True,
    default=None,
    help="Allow plain ws:// relays beyond loopback (frames and relay tokens in clear; allow_plain).",
)
@pass_state
def station_run(
    state: State,
    passphrase_file: Path | None,
    config_file: Path | None,
    relays: tuple[str, ...],
    link_test_interval: float | None,
    cover_rate: float | None,
    alarm_command: str | None,
    alarm_webhook: str | None,
    log_level: str,
    console_address: str | None,
    insecure_plain: bool | None,
) -> None:
    """Run the station: keep its lines connected, send and receive, serve the CLI."""
    import shlex

    from backchannel.station.config import StationConfig
    from backchannel.station.runner import main_run

    config = StationConfig.load(
        config_file or state.home / "station.toml",
        required=config_file is not None,
        relays=list(relays) or None,
        link_test_interval=link_test_interval,
        cover_rate=cover_rate,
        alarm_command=shlex.split(alarm_command) if alarm_command else None,
        alarm_webhook=alarm_webhook,
        allow_plain=insecure_plain,
    )
    from backchannel.console.server import ConsoleService

    console = ConsoleService.from_options(
        config_file or state.home / "station.toml", console_address, required=config_file is not None
    )
    require_station(state.home)  # (after the config's own errors) before the passphrase, not a traceback
    passphrase = read_passphrase(passphrase_file)
    main_run(state.home, passphrase, config, log_level.upper(), services=[console] if console else [])


@station.command("wait")
@click.option("--timeout", type=float, default=60.0, show_default=True, help="Seconds to wait.")
@pass_state
def station_wait(state: State, timeout: float) -> None:
    """Wait until the station answers on its control socket (after `station run &`)."""
    import time

    from backchannel.errors import StationNotRunning, TransportError
    from backchannel.station.control import ControlClient

    require_station(state.home)
    deadline = time.monotonic() + timeout
    while True:
        try:
            with ControlClient(state.home, timeout=5) as client:
                client.call("ping")
            return
        except (StationNotRunning, TransportError):
            if time.monotonic() > deadline:
                raise StationNotRunning(
                    f"the station in {state.home} did not answer within {timeout:g} s; "
                    "see what `backchannel station run` printed"
                ) from None
            time.sleep(0.1)


@cli.group()
def relay() -> None:
    """Run a relay."""


@relay.command("serve")
@click.option(
    "--config",
    "config_file",
    type=click.Path(path_type=Path, dir_okay=False),
    help="Relay config file (TOML with a [relay] table).",
)
@click.option("--host", help="Address to listen on (default 127.0.0.1).")
@click.option("--port", type=int, help="Port (default 7400; 0 picks a free one).")
@click.option("--db", "db", help="SQLite database path (default relay.db), or a postgresql:// URL.")
@click.option(
    "--tls",
    type=click.Choice(["auto", "on", "off"]),
    help="Serve TLS (default auto: on unless listening on loopback).",
)
@click.option("--tls-cert", help="PEM certificate to serve (default: a self-signed one made at first start).")
@click.option("--tls-key", help="PEM private key of --tls-cert.")
@click.option(
    "--metrics-listen",
    help="HOST:PORT to serve /metrics on, apart from the relay's port "
    "(bearer token: metrics_token, or $BACKCHANNEL_RELAY_METRICS_TOKEN).",
)
def relay_serve(
    config_file: Path | None,
    host: str | None,
    port: int | None,
    db: str | None,
    tls: str | None,
    tls_cert: str | None,
    tls_key: str | None,
    metrics_listen: str | None,
) -> None:
    """Serve mailboxes: store-and-forward of sealed frames it cannot read."""
    from backchannel.relay.config import RelayConfig
    from backchannel.relay.server import main_serve

    config = RelayConfig.load(
        str(config_file) if config_file else None,
        host=host,
        port=port,
        db_path=db,
        tls=tls,
        tls_cert=tls_cert,
        tls_key=tls_key,
        metrics_listen=metrics_listen,
    )
    main_serve(config)


@relay.command("pin")
@click.option(
    "--config",
    "config_file",
    type=click.Path(path_type=Path, dir_okay=False),
    help="Relay config file (TOML with a [relay] table).",
)
@click.option("--db", "db", help="The relay's SQLite database (its self-signed certificate lives beside it).")
@click.option("--tls-cert", help="A PEM certificate: the relay's, or a TLS-terminating proxy's.")
def relay_pin(config_file: Path | None, db: str | None, tls_cert: str | None) -> None:
    """Print the pin stations name a relay by: SHA-256 of its certificate's public key.

    Without --tls-cert, the relay's own certificate (the self-signed one is made now if the
    relay has none yet, exactly as `relay serve` would at its first start).
    """
    from backchannel.proto.relay_pin import pin_text
    from backchannel.relay.certificate import certificate_files
    from backchannel.relay.config import RelayConfig
    from backchannel.tls import certificate_pin

    if tls_cert:
        cert = Path(tls_cert)
    else:
        config = RelayConfig.load(str(config_file) if config_file else None, db_path=db)
        cert, _ = certificate_files(config)
    click.echo(pin_text(certificate_pin(cert)))


record_commands.register(cli, line_commands.transcript, pass_state, json_option, emit)


@cli.command()
@click.option("--keep", is_flag=True, help="Keep the temporary directory afterwards.")
@click.option("--fast", is_flag=True, help="Shorter pauses (for tests).")
def demo(keep: bool, fast: bool) -> None:
    """Run a relay and two stations (washington, moscow) and show the line at work."""
    from backchannel.cli.demo import run_demo

    run_demo(keep=keep, fast=fast)


@cli.command()
@click.argument("shell", type=click.Choice(["bash", "zsh", "fish"]))
def completion(shell: str) -> None:
    """Print the shell completion script for SHELL.

    \b
    bash:  eval "$(backchannel completion bash)"   (in ~/.bashrc)
    zsh:   eval "$(backchannel completion zsh)"    (in ~/.zshrc)
    """
    from click.shell_completion import get_completion_class

    completer = get_completion_class(shell)
    assert completer is not None  # the choice above lists only shells click supports
    click.echo(completer(cli, {}, "backchannel", COMPLETE_VAR).source())


#: The variable click's completion scripts set when they ask ``backchannel`` for candidates.
COMPLETE_VAR = "_BACKCHANNEL_COMPLETE"


def main() -> None:
    """Entry point: run the CLI, turning every backchannel error into one clear line."""
    debug = "--debug" in sys.argv
    try:
        # The name is fixed so that completion works the same for `python -m backchannel`.
        cli.main(prog_name="backchannel", complete_var=COMPLETE_VAR, standalone_mode=False)
    except click.exceptions.Abort:
        render.err_console.print("aborted")
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except BackchannelError as exc:
        if debug:
            traceback.print_exc()
        if "--json" in sys.argv:
            click.echo(json.dumps({"error": {"code": exc.code, "message": str(exc)}}), err=True)
        else:
            render.err_console.print(f"[red]error:[/] {render.lit(exc)}")
        sys.exit(1)
    except KeyboardInterrupt:
        sys.exit(130)
    except OSError as exc:  # the file system refused something: one line naming what and where
        if debug:
            traceback.print_exc()
        where = f": {exc.filename}" if exc.filename else ""
        render.err_console.print(f"[red]error:[/] {render.lit(exc.strerror or exc)}{render.lit(where)}")
        sys.exit(1)
    except Exception as exc:  # a bug: still one line, the traceback on request
        if debug:
            traceback.print_exc()
        render.err_console.print(
            f"[red]error:[/] unexpected {type(exc).__name__}: {render.lit(exc)} "
            "(run again with --debug for the traceback, and report it)"
        )
        sys.exit(1)


from backchannel.cli import operators as _operators  # noqa: E402

_operators.register(cli)
