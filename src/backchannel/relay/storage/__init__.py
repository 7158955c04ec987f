"""Durable mailbox stores: the ``MailboxStore`` protocol and its implementations."""

from backchannel.relay.storage.base import (
    AddMailbox,
    DeleteMailbox,
    DeleteMessage,
    ExpireMailboxes,
    ExpireMessages,
    MailboxRecord,
    MailboxStore,
    Outcome,
    PutMessage,
    StoredMessage,
    TouchMailbox,
    WriteOp,
    WriteResult,
)

__all__ = [
    "AddMailbox",
    "DeleteMailbox",
    "DeleteMessage",
    "ExpireMailboxes",
    "ExpireMessages",
    "MailboxRecord",
    "MailboxStore",
    "Outcome",
    "PutMessage",
    "StoredMessage",
    "TouchMailbox",
    "WriteOp",
    "WriteResult",
]
