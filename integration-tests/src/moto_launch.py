"""moto's server, with two emulation costs taken out (AWS behaves the same).

1. moto 5 keeps every model instance it ever made, for its dashboard:
   `BaseModel.__new__` here skips that bookkeeping.
2. moto's TransactWriteItems deep-copies the whole table once per item of
   every transaction, to restore it if the transaction fails: a cost that
   grows with the table, and a restore that wipes what other requests
   wrote meanwhile. Here each transaction keeps a journal of the items it
   touches instead, and a failed one puts back exactly those.
3. moto answers GetBucketVersioning inside a `<GetBucketVersioningResponse>`
   root, which the Rust SDK cannot read; S3 answers with a
   `<VersioningConfiguration>` root, as here.
"""
import copy
import sys
import threading

import moto.core.common_models as models


def untracked(cls, *args, **kwargs):
    return super(models.BaseModel, cls).__new__(cls)


models.BaseModel.__new__ = staticmethod(untracked)

import moto.dynamodb.models as dynamodb  # noqa: E402
from moto.dynamodb.models.table import Table  # noqa: E402

_journaling = threading.local()


class _CopyWithoutTables:
    """`copy` for moto's DynamoDB module: no whole-table copies while a
    transaction journals its items."""

    def deepcopy(self, value, memo=None):
        if isinstance(value, Table) and getattr(_journaling, "on", False):
            return value
        return copy.deepcopy(value, memo)

    def __getattr__(self, name):
        return getattr(copy, name)


dynamodb.copy = _CopyWithoutTables()
_transact = dynamodb.DynamoDBBackend.transact_write_items


def _slot(backend, op_type, op):
    table = backend.tables.get(op.get("TableName"))
    if table is None:
        return None
    if op_type == "Put":
        attrs = op.get("Item", {})
        key = {table.hash_key_attr: attrs.get(table.hash_key_attr)}
        if table.range_key_attr is not None:
            key[table.range_key_attr] = attrs.get(table.range_key_attr)
    else:
        key = op.get("Key", {})
    try:
        hash_key, range_key = backend.get_keys_value(table, key)
    except Exception:  # an invalid key: moto itself reports it
        return None
    if range_key is None:
        previous = table.items.get(hash_key)
    else:
        previous = table.items.get(hash_key, {}).get(range_key)
    return table, hash_key, range_key, copy.deepcopy(previous)


def _restore(journal):
    for table, hash_key, range_key, previous in reversed(journal):
        if range_key is None:
            if previous is None:
                table.items.pop(hash_key, None)
            else:
                table.items[hash_key] = previous
        else:
            part = table.items[hash_key]
            if previous is None:
                part.pop(range_key, None)
            else:
                part[range_key] = previous


def transact_write_items(self, transact_items):
    journal = []
    for item in transact_items:
        if len(item) == 1:
            op_type, op = next(iter(item.items()))
            slot = _slot(self, op_type, op)
            if slot is not None:
                journal.append(slot)
    _journaling.on = True
    try:
        return _transact(self, transact_items)
    except Exception:
        _restore(journal)
        raise
    finally:
        _journaling.on = False


dynamodb.DynamoDBBackend.transact_write_items = transact_write_items

from moto.s3 import responses as s3_responses  # noqa: E402


def get_bucket_versioning(self):
    status = self.backend.get_bucket_versioning(self.bucket_name)
    inner = "<Status>%s</Status>" % status if status else ""
    return 200, {}, (
        '<?xml version="1.0" encoding="UTF-8"?>'
        '<VersioningConfiguration xmlns="http://s3.amazonaws.com/doc/2006-03-01/">'
        + inner
        + "</VersioningConfiguration>"
    )


s3_responses.S3Response.get_bucket_versioning = get_bucket_versioning

from moto.server import main  # noqa: E402

main(sys.argv[1:])
