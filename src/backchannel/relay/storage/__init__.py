"""Durable mailbox stores: the ``MailboxStore`` protocol and its implementations."""

from backchannel.relay.storage.base import (
    AddMailbox,
    DeleteMessage,
    ExpireMessages,
    MailboxRecord,
    MailboxStore,
    Outcome,
    PutMessage,
    StoredMessage,
    WriteOp,
    WriteResult,
)

__all__ = [
    "AddMailbox",
    "DeleteMessage",
    "ExpireMessages",
    "MailboxRecord",
    "MailboxStore",
    "Outcome",
    "PutMessage",
    "StoredMessage",
    "WriteOp",
    "WriteResult",
]
