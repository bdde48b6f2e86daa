"""Independent checks of a lake in S3 + Glue (moto's server in the tests), with boto3 and pyarrow.

    aws_lake.py setup  ENDPOINT BUCKET DATABASE            # fresh bucket and Glue database
    aws_lake.py kms-key ENDPOINT                           # creates a KMS key, prints its ARN
    aws_lake.py check  ENDPOINT BUCKET DATABASE TABLE      # prints one JSON report

The report holds what the test asserts on: every object's server-side encryption, the Glue
table and partitions as Glue returns them, and the rows read through Glue (partition locations
from Glue, files from S3) with pyarrow.
"""
import json
import sys
from urllib.parse import urlparse

import boto3
import pyarrow.dataset as ds
import pyarrow.fs as pafs

REGION = "us-east-1"


def client(service, endpoint):
    return boto3.client(
        service,
        endpoint_url=endpoint,
        region_name=REGION,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )


def setup(endpoint, bucket, database):
    requests_reset(endpoint)
    client("s3", endpoint).create_bucket(Bucket=bucket)
    client("glue", endpoint).create_database(DatabaseInput={"Name": database})


def requests_reset(endpoint):
    import urllib.request

    urllib.request.urlopen(urllib.request.Request(endpoint + "/moto-api/reset", method="POST"))


def kms_key(endpoint):
    print(client("kms", endpoint).create_key(Description="sluice test")["KeyMetadata"]["Arn"])


def check(endpoint, bucket, database, table):
    s3 = client("s3", endpoint)
    glue = client("glue", endpoint)
    objects = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        for o in page.get("Contents", []):
            h = s3.head_object(Bucket=bucket, Key=o["Key"])
            objects.append(
                {
                    "key": o["Key"],
                    "sse": h.get("ServerSideEncryption"),
                    "kms_key_id": h.get("SSEKMSKeyId"),
                }
            )
    t = glue.get_table(DatabaseName=database, Name=table)["Table"]
    parts = []
    for page in glue.get_paginator("get_partitions").paginate(DatabaseName=database, TableName=table):
        parts.extend(page["Partitions"])
    fs = pafs.S3FileSystem(
        endpoint_override=endpoint,
        scheme="http",
        access_key="testing",
        secret_key="testing",
        region=REGION,
    )
    rows = 0
    insert_ids = []
    columns = [c["Name"] for c in t["StorageDescriptor"]["Columns"]]
    for p in parts:
        loc = urlparse(p["StorageDescriptor"]["Location"])
        files = [
            f.path
            for f in fs.get_file_info(pafs.FileSelector(loc.netloc + loc.path, recursive=False))
            if f.is_file and f.path.endswith(".parquet")
        ]
        if not files:
            continue
        d = ds.dataset(files, format="parquet", filesystem=fs)
        for name in d.schema.names:
            assert name in columns, f"{name} in a file under {p['Values']} but not in Glue"
        got = d.to_table(columns=["mp_insert_id"])
        rows += got.num_rows
        insert_ids.extend(got.column("mp_insert_id").to_pylist())
    print(
        json.dumps(
            {
                "objects": objects,
                "table": {
                    "name": t["Name"],
                    "type": t.get("TableType"),
                    "parameters": t.get("Parameters", {}),
                    "partition_keys": t.get("PartitionKeys", []),
                    "location": t["StorageDescriptor"]["Location"],
                    "input_format": t["StorageDescriptor"].get("InputFormat"),
                    "output_format": t["StorageDescriptor"].get("OutputFormat"),
                    "serde": t["StorageDescriptor"].get("SerdeInfo", {}).get("SerializationLibrary"),
                    "columns": t["StorageDescriptor"]["Columns"],
                },
                "partitions": [
                    {"values": p["Values"], "location": p["StorageDescriptor"]["Location"]}
                    for p in parts
                ],
                "rows": rows,
                "insert_ids": insert_ids,
            }
        )
    )


if __name__ == "__main__":
    cmd, endpoint = sys.argv[1], sys.argv[2]
    if cmd == "setup":
        setup(endpoint, sys.argv[3], sys.argv[4])
    elif cmd == "kms-key":
        kms_key(endpoint)
    elif cmd == "check-empty":
        s3 = client("s3", endpoint)
        print(s3.list_objects_v2(Bucket=sys.argv[3]).get("KeyCount", 0))
    elif cmd == "check":
        check(endpoint, *sys.argv[3:6])
    else:
        sys.exit(f"unknown command {cmd}")
