"""``python -m backchannel.relay``: run a relay without the full CLI (handy for tests).

Prints ``relay listening on ws://HOST:PORT`` (``wss://HOST:PORT#pin=…`` with TLS) on stdout
once it accepts connections.
"""

from __future__ import annotations

import argparse
import sys

from backchannel.errors import BackchannelError
from backchannel.relay.config import METRICS_TOKEN_ENV, RelayConfig
from backchannel.relay.server import main_serve


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m backchannel.relay", description="Run a backchannel relay."
    )
    parser.add_argument("--config", help="TOML file with a [relay] table")
    parser.add_argument("--host", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, help="port to listen on; 0 picks a free one")
    parser.add_argument("--db", dest="db_path", help="SQLite database file, or a postgresql:// URL")
    parser.add_argument(
        "--metrics-listen",
        help="HOST:PORT to serve /metrics on, apart from the relay's port "
        f"(bearer token: metrics_token, or ${METRICS_TOKEN_ENV})",
    )
    parser.add_argument("--tls", choices=("auto", "on", "off"), help="serve TLS (auto: unless on loopback)")
    parser.add_argument("--tls-cert", help="PEM certificate to serve (else a self-signed one in --tls-dir)")
    parser.add_argument("--tls-key", help="PEM key of --tls-cert")
    parser.add_argument("--tls-dir", help="where the self-signed certificate is kept (default: beside --db)")
    args = parser.parse_args(argv)
    try:
        config = RelayConfig.load(
            args.config,
            host=args.host,
            port=args.port,
            db_path=args.db_path,
            metrics_listen=args.metrics_listen,
            tls=args.tls,
            tls_cert=args.tls_cert,
            tls_key=args.tls_key,
            tls_dir=args.tls_dir,
        )
        main_serve(config)
    except BackchannelError as exc:
        print(f"relay: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
