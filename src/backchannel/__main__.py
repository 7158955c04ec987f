"""``python -m backchannel`` is the ``backchannel`` command."""

from backchannel.cli.main import main

main()
