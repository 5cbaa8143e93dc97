"""Describes the ledger's DynamoDB tables the way an ops tool sees them (boto3, not our SDK
client), as one normalised JSON document on stdout, for tests/conformance_dynamodb.rs.
It only reads; the assertions live in the Rust test.

Usage: python describe_tables.py <endpoint-url> <table-prefix>
"""

import json
import sys

import boto3


def keys(schema):
    return {k["KeyType"]: k["AttributeName"] for k in schema}


def main():
    endpoint, prefix = sys.argv[1], sys.argv[2]
    client = boto3.client(
        "dynamodb",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    out = {}
    for suffix in ("events", "views"):
        name = f"{prefix}-{suffix}"
        table = client.describe_table(TableName=name)["Table"]
        backups = client.describe_continuous_backups(TableName=name)
        pitr = backups["ContinuousBackupsDescription"]["PointInTimeRecoveryDescription"]
        out[suffix] = {
            "TableName": table["TableName"],
            "TableStatus": table["TableStatus"],
            "Keys": keys(table["KeySchema"]),
            "Attributes": {
                a["AttributeName"]: a["AttributeType"]
                for a in table["AttributeDefinitions"]
            },
            "Indexes": {
                i["IndexName"]: {
                    "Keys": keys(i["KeySchema"]),
                    "Projection": i["Projection"]["ProjectionType"],
                }
                for i in table.get("GlobalSecondaryIndexes", [])
            },
            "Stream": table.get("StreamSpecification"),
            "HasStreamArn": "LatestStreamArn" in table,
            "BillingMode": table.get("BillingModeSummary", {}).get("BillingMode"),
            "SSE": {
                "Status": table.get("SSEDescription", {}).get("Status"),
                "SSEType": table.get("SSEDescription", {}).get("SSEType"),
            },
            "DeletionProtectionEnabled": table.get("DeletionProtectionEnabled"),
            "PointInTimeRecovery": pitr["PointInTimeRecoveryStatus"],
        }
    print(json.dumps(out, sort_keys=True))


if __name__ == "__main__":
    main()
