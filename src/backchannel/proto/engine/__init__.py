"""The line engine: the protocol of one line as pure functions that return effects.

Theory of operation
-------------------
A line's protocol state is a :class:`~backchannel.proto.engine.core.LineCore` (the keys,
counters and transcript of :class:`~backchannel.proto.line.LineState` plus the lifecycle,
and, in memory only, the peer's report for recovery and the link watch of :mod:`.linkcheck`);
the Olm session travels beside it, as in :mod:`backchannel.proto.line`. Each event is one
call: :func:`receiving.receive` for an authenticated frame from a relay, :func:`sending.send`
for a payload of ours, :func:`ticking.tick` for the passage of time (link tests, circuit
health and end-to-end recovery, :mod:`.linkcheck` and :mod:`.recovery`). Each returns the
new core and a list of :mod:`.effects`: plain data saying what to store, what to send after
the commit, which alarm to raise or clear. The engine asks stored state only through the
read-only :class:`.ledger.Ledger`.

The station is the shell: it opens a transaction, calls the engine, applies the effects to
the store and its in-memory mirror, commits, then carries out the post-commit effects (send,
wake waiters, dispatch alarms). Because the engine does no I/O, it is tested by driving two
engines through a simulated relay (``tests/property/test_engine_machine.py``).
"""
