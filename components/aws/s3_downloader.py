"""S3 Downloader: downloads one object, or every object under a prefix, keeping the directory
structure below the prefix. Credentials: explicit keys, or (left empty) the AWS default chain —
IRSA web identity on EKS, a CLI profile, env keys; optionally assumes an IAM role on top."""

import os
import tempfile

from lfx.custom.custom_component.component import Component
from lfx.io import MessageTextInput, Output, SecretStrInput
from lfx.schema.data import Data


def aws_session(region, role_arn="", access_key="", secret_key="", session_token=""):
    """A boto3 session and a description of where its credentials came from."""
    import boto3

    if access_key and secret_key:
        base = boto3.Session(
            aws_access_key_id=access_key,
            aws_secret_access_key=secret_key,
            aws_session_token=session_token or None,
            region_name=region or None,
        )
    else:
        base = boto3.Session(region_name=region or None)
    credentials = base.get_credentials()
    if credentials is None:
        msg = "no AWS credentials: fill the access key fields or configure the default chain (IRSA, profile, env)"
        raise ValueError(msg)
    provider = credentials.method
    if not role_arn:
        return base, provider
    assumed = base.client("sts").assume_role(RoleArn=role_arn, RoleSessionName="langflow-component")["Credentials"]
    session = boto3.Session(
        aws_access_key_id=assumed["AccessKeyId"],
        aws_secret_access_key=assumed["SecretAccessKey"],
        aws_session_token=assumed["SessionToken"],
        region_name=region or None,
    )
    return session, f"assume-role (source: {provider})"


class S3DownloaderComponent(Component):
    display_name = "S3 Downloader"
    description = "Download an S3 object or every object under a prefix, keeping the directory structure."
    icon = "Amazon"
    name = "S3Downloader"

    inputs = [
        MessageTextInput(name="bucket", display_name="Bucket", required=True),
        MessageTextInput(name="key", display_name="Key or prefix", info="An object key, or a prefix ending in /"),
        MessageTextInput(name="destination", display_name="Destination directory", advanced=True,
                         info="Empty: a new temporary directory"),
        MessageTextInput(name="region", display_name="Region", value="us-east-1"),
        MessageTextInput(name="role_arn", display_name="IAM Role ARN", advanced=True,
                         info="Optional: assume this role with the resolved credentials"),
        SecretStrInput(name="access_key_id", display_name="AWS Access Key ID", advanced=True),
        SecretStrInput(name="secret_access_key", display_name="AWS Secret Access Key", advanced=True),
        SecretStrInput(name="session_token", display_name="AWS Session Token", advanced=True),
    ]
    outputs = [Output(display_name="Files", name="files", method="download")]

    def download(self) -> Data:
        session, provider = aws_session(
            self.region, self.role_arn, self.access_key_id, self.secret_access_key, self.session_token
        )
        s3 = session.client("s3")
        caller = session.client("sts").get_caller_identity()["Arn"]
        destination = self.destination or tempfile.mkdtemp(prefix="s3-download-")
        key = self.key or ""
        if key and not key.endswith("/"):
            keys = [key]
            base = os.path.dirname(key)
        else:
            keys = []
            for page in s3.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=key):
                keys.extend(obj["Key"] for obj in page.get("Contents", []) if not obj["Key"].endswith("/"))
            base = key.rstrip("/")
        files = []
        root = os.path.realpath(destination)
        for object_key in keys:
            relative = os.path.relpath(object_key, base) if base else object_key
            target = os.path.realpath(os.path.join(root, relative))
            if not target.startswith(root + os.sep):
                msg = f"object key {object_key!r} would be written outside {root}"
                raise ValueError(msg)
            os.makedirs(os.path.dirname(target), exist_ok=True)
            s3.download_file(self.bucket, object_key, target)
            with open(target, "rb") as handle:
                content = handle.read()
            files.append({"key": object_key, "path": target, "relative_path": relative,
                          "size": len(content), "text": content.decode("utf-8", errors="replace")})
        result = {"bucket": self.bucket, "provider": provider, "caller": caller, "files": files}
        self.status = f"{len(files)} file(s) as {caller} ({provider})"
        return Data(data=result)
