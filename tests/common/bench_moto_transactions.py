"""Measures what patch (c) of moto_server.py buys: the median latency of a 2-Put
TransactWriteItems against a table of N items, on stock moto 5.2.1 (which deep-copies the
table per transaction) and on the patched launcher (undo log of touched items).
Not a test: run by hand, numbers go to BENCHMARKS.md.

Usage: .venv/bin/python tests/common/bench_moto_transactions.py [N ...]   (default 1000 10000)
"""

import statistics
import subprocess
import sys
import time
from pathlib import Path

import boto3

ROOT = Path(__file__).resolve().parents[2]
PYTHON = sys.executable
STOCK = (
    "import logging, sys\n"
    "logging.getLogger('werkzeug').setLevel(logging.ERROR)\n"
    "from moto.server import ThreadedMotoServer\n"
    "s = ThreadedMotoServer(ip_address='127.0.0.1', port=0, verbose=False)\n"
    "s.start()\n"
    "print('moto ready on http://%s:%d' % s.get_host_and_port(), flush=True)\n"
    "sys.stdin.read()\n"
)


def start(patched):
    args = [str(ROOT / "tests/common/moto_server.py")] if patched else ["-c", STOCK]
    proc = subprocess.Popen(
        [PYTHON, *args], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    return proc, proc.stdout.readline().strip().split(" on ")[1]


def median_transaction_ms(patched, items, rounds=30):
    proc, endpoint = start(patched)
    try:
        db = boto3.client(
            "dynamodb",
            endpoint_url=endpoint,
            region_name="us-east-1",
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )
        db.create_table(
            TableName="t",
            KeySchema=[
                {"AttributeName": "pk", "KeyType": "HASH"},
                {"AttributeName": "sk", "KeyType": "RANGE"},
            ],
            AttributeDefinitions=[
                {"AttributeName": "pk", "AttributeType": "S"},
                {"AttributeName": "sk", "AttributeType": "N"},
            ],
            BillingMode="PAY_PER_REQUEST",
            StreamSpecification={"StreamEnabled": True, "StreamViewType": "NEW_IMAGE"},
        )
        for first in range(0, items, 25):
            db.batch_write_item(
                RequestItems={
                    "t": [
                        {
                            "PutRequest": {
                                "Item": {
                                    "pk": {"S": f"p{j % 50}"},
                                    "sk": {"N": str(j)},
                                    "payload": {"S": "x" * 200},
                                }
                            }
                        }
                        for j in range(first, min(first + 25, items))
                    ]
                }
            )
        times = []
        for k in range(rounds):
            started = time.perf_counter()
            db.transact_write_items(
                TransactItems=[
                    {
                        "Put": {
                            "TableName": "t",
                            "Item": {"pk": {"S": "new"}, "sk": {"N": str(2 * k + m)}},
                            "ConditionExpression": "attribute_not_exists(pk)",
                        }
                    }
                    for m in range(2)
                ]
            )
            times.append(time.perf_counter() - started)
        return statistics.median(times) * 1000
    finally:
        proc.stdin.close()
        proc.kill()


def main():
    sizes = [int(a) for a in sys.argv[1:]] or [1000, 10000]
    print("| items in table | stock moto 5.2.1 | patched launcher |")
    print("|---|---|---|")
    for items in sizes:
        stock = median_transaction_ms(False, items)
        patched = median_transaction_ms(True, items)
        print(f"| {items} | {stock:.1f} ms | {patched:.1f} ms |", flush=True)


if __name__ == "__main__":
    main()
