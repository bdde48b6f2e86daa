"""Independent checks of a lake in S3 + Glue (moto's server in the tests), with boto3 and pyarrow.

    aws_lake.py setup  ENDPOINT BUCKET DATABASE            # fresh bucket and Glue database
    aws_lake.py kms-key ENDPOINT                           # creates a KMS key, prints its ARN
    aws_lake.py check  ENDPOINT BUCKET DATABASE TABLE      # prints one JSON report
    aws_lake.py roles  ENDPOINT EXTERNAL_ID                # an engine user and two roles, JSON
    aws_lake.py enforce ENDPOINT on|off                    # IAM enforced on every call, or not
    aws_lake.py uploads ENDPOINT BUCKET                    # data objects and unfinished uploads, JSON
    aws_lake.py json-table ENDPOINT BUCKET DATABASE TABLE  # a JSON-format table through Glue, JSON
    aws_lake.py state ENDPOINT BUCKET PREFIX               # the commit state's log under PREFIX, JSON

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


def roles(endpoint, external_id):
    """The engine's own IAM user (its keys are what the engine runs with), and two roles that
    trust that user only with the external id: one for S3, one for Glue, each allowed its own
    service only, so that a client using the wrong role fails; and one that may only read S3."""
    iam = client("iam", endpoint)
    user = iam.create_user(UserName="engine")["User"]
    key = iam.create_access_key(UserName="engine")["AccessKey"]
    trust = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {"AWS": user["Arn"]},
                "Action": "sts:AssumeRole",
                "Condition": {"StringEquals": {"sts:ExternalId": external_id}},
            }
        ],
    }
    arns = {}
    for name, action in [
        ("s3", "s3:*"),
        ("glue", "glue:*"),
        ("readonly", ["s3:ListBucket", "s3:GetObject"]),
    ]:
        role = iam.create_role(
            RoleName=f"export-{name}", AssumeRolePolicyDocument=json.dumps(trust)
        )["Role"]
        iam.put_role_policy(
            RoleName=f"export-{name}",
            PolicyName="export",
            PolicyDocument=json.dumps(
                {
                    "Version": "2012-10-17",
                    "Statement": [{"Effect": "Allow", "Action": action, "Resource": "*"}],
                }
            ),
        )
        arns[name] = role["Arn"]
    iam.put_user_policy(
        UserName="engine",
        PolicyName="assume",
        PolicyDocument=json.dumps(
            {
                "Version": "2012-10-17",
                "Statement": [
                    {"Effect": "Allow", "Action": "sts:AssumeRole", "Resource": list(arns.values())}
                ],
            }
        ),
    )
    print(
        json.dumps(
            {
                "access_key": key["AccessKeyId"],
                "secret_key": key["SecretAccessKey"],
                "s3_role": arns["s3"],
                "glue_role": arns["glue"],
                "readonly_role": arns["readonly"],
            }
        )
    )


def enforce(endpoint, on):
    """moto checks credentials and IAM policies on every call from now on (or stops)."""
    import urllib.request

    body = b"0" if on == "on" else b"inf"
    urllib.request.urlopen(
        urllib.request.Request(
            endpoint + "/moto-api/reset-auth",
            data=body,
            method="POST",
            # Not a form: the server reads the raw body.
            headers={"Content-Type": "text/plain"},
        )
    )


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


def json_table(endpoint, bucket, database, table):
    """A JSON-format table as Glue gives it, and the rows of the .json.gz files at its
    partitions' locations (read with gzip + json, independently of sluice)."""
    import gzip

    s3 = client("s3", endpoint)
    glue = client("glue", endpoint)
    t = glue.get_table(DatabaseName=database, Name=table)["Table"]
    parts = []
    for page in glue.get_paginator("get_partitions").paginate(DatabaseName=database, TableName=table):
        parts.extend(page["Partitions"])
    insert_ids = []
    keys = []
    for p in parts:
        loc = urlparse(p["StorageDescriptor"]["Location"])
        prefix = loc.path.lstrip("/")
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=loc.netloc, Prefix=prefix):
            for o in page.get("Contents", []):
                if "/" in o["Key"][len(prefix):]:
                    continue
                keys.append(o["Key"])
                body = s3.get_object(Bucket=loc.netloc, Key=o["Key"])["Body"].read()
                for line in gzip.decompress(body).decode().splitlines():
                    row = json.loads(line)
                    insert_ids.append(row.get("mp_insert_id"))
    sd = t["StorageDescriptor"]
    print(
        json.dumps(
            {
                "name": t["Name"],
                "parameters": t.get("Parameters", {}),
                "serde": sd.get("SerdeInfo", {}).get("SerializationLibrary"),
                "input_format": sd.get("InputFormat"),
                "location": sd["Location"],
                "columns": sd["Columns"],
                "partitions": [p["Values"][0] for p in parts],
                "keys": keys,
                "insert_ids": insert_ids,
            }
        )
    )


def uploads(endpoint, bucket):
    """The data objects (with their ETags: a multipart object's ends in -<parts>) and the
    multipart uploads not completed, with their parts."""
    s3 = client("s3", endpoint)
    objects = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        for o in page.get("Contents", []):
            if o["Key"].endswith(".parquet"):
                objects.append({"key": o["Key"], "etag": o["ETag"].strip('"'), "size": o["Size"]})
    pending = []
    for u in s3.list_multipart_uploads(Bucket=bucket).get("Uploads", []):
        parts = s3.list_parts(Bucket=bucket, Key=u["Key"], UploadId=u["UploadId"]).get("Parts", [])
        pending.append({"key": u["Key"], "parts": len(parts)})
    print(json.dumps({"objects": objects, "uploads": pending}))


def state(endpoint, bucket, prefix):
    """The operations of the commit state's log (`<prefix>log/<seq>.json`), in order, each with
    its sequence number and writer; read with boto3, independently of sluice."""
    s3 = client("s3", endpoint)
    entries = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix + "log/"):
        for o in page.get("Contents", []):
            e = json.loads(s3.get_object(Bucket=bucket, Key=o["Key"])["Body"].read())
            op = e["op"]
            op["seq"] = int(o["Key"].rsplit("/", 1)[1].split(".")[0])
            op["writer"] = e["writer"]
            entries.append(op)
    entries.sort(key=lambda e: e["seq"])
    print(json.dumps(entries))


if __name__ == "__main__":
    cmd, endpoint = sys.argv[1], sys.argv[2]
    if cmd == "setup":
        setup(endpoint, sys.argv[3], sys.argv[4])
    elif cmd == "kms-key":
        kms_key(endpoint)
    elif cmd == "check-empty":
        s3 = client("s3", endpoint)
        print(s3.list_objects_v2(Bucket=sys.argv[3]).get("KeyCount", 0))
    elif cmd == "roles":
        roles(endpoint, sys.argv[3])
    elif cmd == "enforce":
        enforce(endpoint, sys.argv[3])
    elif cmd == "json-table":
        json_table(endpoint, *sys.argv[3:6])
    elif cmd == "uploads":
        uploads(endpoint, sys.argv[3])
    elif cmd == "check":
        check(endpoint, *sys.argv[3:6])
    elif cmd == "state":
        state(endpoint, *sys.argv[3:5])
    else:
        sys.exit(f"unknown command {cmd}")
