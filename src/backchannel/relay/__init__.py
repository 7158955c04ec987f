"""The untrusted relay: store-and-forward mailboxes of opaque frames over WebSocket.

It imports only the frame codec from ``backchannel.proto`` (an import-linter contract), so
"the relay cannot read messages" holds in the import graph as well as in the cryptography.
Entry points: :func:`backchannel.relay.server.run_relay` and ``main_serve``.
"""
