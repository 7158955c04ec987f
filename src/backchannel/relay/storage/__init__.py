"""Durable mailbox stores: the ``MailboxStore`` protocol and its implementations."""

from backchannel.relay.storage.base import (
    AddMailbox,
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
