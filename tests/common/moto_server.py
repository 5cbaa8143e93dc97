"""Moto server launcher for the test harness (tests/common/moto.rs).

Imports moto 5.2.x, applies the project's patches for known moto defects that the ledger's
DynamoDB adapter would otherwise trip over, and serves moto's app on 127.0.0.1. It must not
change moto's behaviour beyond those patches.

Usage: python moto_server.py [--port N]   (0 = pick a free port; the default)
Prints `moto ready on http://127.0.0.1:<port>` once the socket accepts connections.
Exits when its stdin closes, so a test process that dies never leaves a server behind.

Patches (each proved through the real endpoint by tests/moto_patches.rs):
  (a) UpdateItem that creates an item emitted two INSERT stream records (one from the
      internal put, one from the update); it now emits exactly one.
  (b) A cancelled TransactWriteItems restored a deep copy of the table, replacing the table
      object and its stream shard, so shard iterators opened before it never saw another
      record. Rollback now restores items in place; the table and shard objects survive.
  (c) TransactWriteItems deep-copied every table it touched (O(table size)) before running.
      It now keeps an undo log of only the items it touches (O(items in the transaction)).
      Stream records of a transaction are published only when it commits, so a cancelled
      transaction leaves neither items nor stream records behind.
  (d) moto's backend is not thread-safe, and the server is threaded: a transaction's
      condition checks and writes could interleave with another request. DynamoDB and
      DynamoDB Streams requests are serialised with one lock, as DynamoDB's own
      serialisable transactions would behave.
  (e) GetShardIterator for a shard the stream does not hold failed an `assert` (HTTP 500);
      it now answers ResourceNotFoundException (400) as DynamoDB Streams does for a shard
      trimmed away after the 24 h retention.

Debug endpoint: GET /_ledger/patch-stats returns, per table, the transactions seen, how
many were cancelled, and the items copied by the last one's undo log.
"""

import argparse
import copy
import json
import logging
import os
import sys
import threading

from moto.dynamodb.exceptions import (
    ConditionalCheckFailed,
    MockValidationException,
    MultipleTransactionsException,
    TooManyTransactionsException,
    TransactionCanceledException,
    TransactWriteSingleOpException,
)
from moto.dynamodb.comparisons import get_filter_expression
from moto.dynamodb.models import DynamoDBBackend
from moto.dynamodb.models.table import StreamShard, Table
from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app
from werkzeug.serving import make_server

PATCH_STATS_PATH = "/_ledger/patch-stats"

_local = threading.local()
_stats_lock = threading.Lock()
_stats = {}  # table name -> {"transactions", "cancelled", "last_items_copied", "total_items_copied"}


# --- (a) one INSERT record for an UpdateItem that creates its item -----------------------

_original_update_item = DynamoDBBackend.update_item
_original_table_put_item = Table.put_item
_original_shard_add = StreamShard.add


def _update_item(self, *args, **kwargs):
    # The only Table.put_item reached from update_item is the one that creates a missing
    # item; update_item itself then records the INSERT with the final image.
    outer = getattr(_local, "in_update_item", False)
    _local.in_update_item = True
    try:
        return _original_update_item(self, *args, **kwargs)
    finally:
        _local.in_update_item = outer


def _table_put_item(self, *args, **kwargs):
    if not getattr(_local, "in_update_item", False):
        return _original_table_put_item(self, *args, **kwargs)
    _local.drop_stream_records = True
    try:
        return _original_table_put_item(self, *args, **kwargs)
    finally:
        _local.drop_stream_records = False


def _shard_add(self, old, new):
    if getattr(_local, "drop_stream_records", False):
        return
    pending = getattr(_local, "pending_stream_records", None)
    if pending is not None:
        # Inside a transaction: publish on commit only.
        pending.append((self, old, new))
        return
    _original_shard_add(self, old, new)


DynamoDBBackend.update_item = _update_item
Table.put_item = _table_put_item
StreamShard.add = _shard_add


# --- (b) + (c) transactions with an undo log of touched items -------------------------


def _key_values(table, key):
    from moto.dynamodb.models.dynamo_type import DynamoType

    hash_value = DynamoType(key[table.hash_key_attr])
    range_value = None
    if table.range_key_attr is not None and table.range_key_attr in key:
        range_value = DynamoType(key[table.range_key_attr])
    return hash_value, range_value


def _restore(table, hash_value, range_value, saved):
    # Writes straight into the item map: a rollback is not a change and emits no record.
    if range_value is not None:
        bucket = table.items[hash_value]
        if saved is None:
            bucket.pop(range_value, None)
        else:
            bucket[range_value] = saved
    elif saved is None:
        table.items.pop(hash_value, None)
    else:
        table.items[hash_value] = saved


def _transact_write_items(self, transact_items):
    if len(transact_items) > 100:
        raise TooManyTransactionsException()

    undo = []  # (table, hash, range, deep copy of the item before, or None)
    copied = {}  # table name -> items copied into the undo log
    target_items = set()
    errors = []
    _local.pending_stream_records = []

    def rollback():
        for table, hash_value, range_value, saved in reversed(undo):
            _restore(table, hash_value, range_value, saved)

    def check_unicity(table_name, key):
        marker = (str(table_name), str(dict(sorted(key.items()))))
        if marker in target_items:
            raise MultipleTransactionsException()
        target_items.add(marker)

    try:
        for item in transact_items:
            original_item = None
            if len(list(item.keys())) > 1:
                raise TransactWriteSingleOpException
            try:
                op_type, op = next(iter(item.items()))
                if op_type not in {"ConditionCheck", "Put", "Delete", "Update"}:
                    raise ValueError("Unsupported transaction operation")

                table_name = op["TableName"]
                condition_expression = op.get("ConditionExpression")
                names = op.get("ExpressionAttributeNames")
                values = op.get("ExpressionAttributeValues")
                return_on_failure = op.get("ReturnValuesOnConditionCheckFailure")

                table = self.get_table(table_name)
                if op_type == "Put":
                    attrs = op["Item"]
                    key = {table.hash_key_attr: attrs[table.hash_key_attr]}
                    if table.range_key_attr is not None:
                        key[table.range_key_attr] = attrs[table.range_key_attr]
                else:
                    key = op["Key"]

                check_unicity(table_name, key)

                current = self.get_item(table_name, key)
                if condition_expression is not None:
                    condition_op = get_filter_expression(
                        condition_expression, names, values
                    )
                    if not condition_op.expr(current):
                        if return_on_failure == "ALL_OLD" and current:
                            original_item = current.to_json()["Attributes"]
                        raise ConditionalCheckFailed(item=original_item)

                if op_type != "ConditionCheck":
                    # Only the item this action changes is saved: O(1) per action.
                    hash_value, range_value = _key_values(table, key)
                    undo.append(
                        (table, hash_value, range_value, copy.deepcopy(current))
                    )
                    copied[table_name] = copied.get(table_name, 0) + 1

                if op_type == "Put":
                    self.put_item(
                        table_name,
                        op["Item"],
                        condition_expression=condition_expression,
                        expression_attribute_names=names,
                        expression_attribute_values=values,
                    )
                elif op_type == "Delete":
                    self.delete_item(
                        table_name,
                        key,
                        condition_expression=condition_expression,
                        expression_attribute_names=names,
                        expression_attribute_values=values,
                    )
                elif op_type == "Update":
                    self.update_item(
                        table_name,
                        key,
                        update_expression=op["UpdateExpression"],
                        condition_expression=condition_expression,
                        expression_attribute_names=names,
                        expression_attribute_values=values,
                    )
                errors.append((None, None, None))
            except (MultipleTransactionsException, MockValidationException):
                raise
            except ConditionalCheckFailed as e:
                errors.append(("ConditionalCheckFailed", str(e.message), original_item))
            except Exception as e:  # noqa: E722 — moto reports any other failure per item
                errors.append((type(e).__name__, str(e), original_item))

        cancelled = any(code is not None for code, _, _ in errors)
        if cancelled:
            rollback()
    except BaseException:
        # Validation errors abort the whole call, as in moto; nothing may stay applied.
        rollback()
        _record_stats(transact_items, copied, cancelled=True)
        _local.pending_stream_records = None
        raise

    pending = _local.pending_stream_records
    _local.pending_stream_records = None
    _record_stats(transact_items, copied, cancelled)
    if cancelled:
        raise TransactionCanceledException(errors)
    for shard, old, new in pending:
        _original_shard_add(shard, old, new)


def _record_stats(transact_items, copied, cancelled):
    names = set()
    for item in transact_items:
        for op in item.values():
            if isinstance(op, dict) and "TableName" in op:
                names.add(op["TableName"])
    with _stats_lock:
        for name in names:
            entry = _stats.setdefault(
                name,
                {
                    "transactions": 0,
                    "cancelled": 0,
                    "last_items_copied": 0,
                    "total_items_copied": 0,
                },
            )
            entry["transactions"] += 1
            entry["cancelled"] += 1 if cancelled else 0
            entry["last_items_copied"] = copied.get(name, 0)
            entry["total_items_copied"] += copied.get(name, 0)


DynamoDBBackend.transact_write_items = _transact_write_items


# --- (e) GetShardIterator of an unknown shard: ResourceNotFoundException ------------------

from moto.dynamodb.exceptions import ResourceNotFoundException
from moto.dynamodbstreams.models import DynamoDBStreamsBackend

_original_get_shard_iterator = DynamoDBStreamsBackend.get_shard_iterator


def _get_shard_iterator(self, arn, shard_id, shard_iterator_type, sequence_number=None):
    table = self._get_table_from_arn(arn)
    if table.stream_shard is None or table.stream_shard.id != shard_id:
        raise ResourceNotFoundException(
            f"Requested resource not found: Shard: {shard_id} in Stream: {arn} not found"
        )
    return _original_get_shard_iterator(
        self, arn, shard_id, shard_iterator_type, sequence_number
    )


DynamoDBStreamsBackend.get_shard_iterator = _get_shard_iterator


# --- (d) serialise DynamoDB requests, and the debug endpoint ---------------------------

_dynamodb_lock = threading.RLock()


def _with_patches(app):
    def wrapped(environ, start_response):
        if environ.get("PATH_INFO") == PATCH_STATS_PATH:
            with _stats_lock:
                body = json.dumps({"tables": _stats}).encode()
            start_response(
                "200 OK",
                [("Content-Type", "application/json"), ("Content-Length", str(len(body)))],
            )
            return [body]
        target = environ.get("HTTP_X_AMZ_TARGET", "")
        if target.startswith("DynamoDB"):
            with _dynamodb_lock:
                # Materialise the body under the lock: moto builds it while iterating.
                return list(app(environ, start_response))
        return app(environ, start_response)

    return wrapped


def _exit_when_stdin_closes():
    try:
        while sys.stdin.buffer.read(4096):
            pass
    finally:
        os._exit(0)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument(
        "--no-stdin-watch",
        action="store_true",
        help="keep serving when stdin closes (for running by hand in the background)",
    )
    args = parser.parse_args()

    # One line per request would bury the test output; errors still reach stderr.
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    app = _with_patches(DomainDispatcherApplication(create_backend_app))
    server = make_server(args.host, args.port, app, threaded=True)
    if not args.no_stdin_watch:
        threading.Thread(target=_exit_when_stdin_closes, daemon=True).start()
    print(f"moto ready on http://{args.host}:{server.server_port}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
