"""The Python side of a credential scenario: resolve credentials through boto3's default chain,
exactly as a Langflow component does, report which provider won and call GetCallerIdentity.
Prints one JSON object in the same shape as the Rust probe (harness/src/credentials/probe.rs)."""

import json
import sys

PROVIDERS = {
    "env": "environment",
    "assume-role-with-web-identity": "web-identity",
    "shared-credentials-file": "profile",
    "config-file": "profile",
    "assume-role": "assume-role",
}
KNOWN_CODES = ("InvalidIdentityToken", "ExpiredTokenException", "ExpiredToken", "AccessDenied",
               "InvalidClientTokenId", "SignatureDoesNotMatch")


def main() -> None:
    out = {"provider": None, "sdk_provider": None, "arn": None, "error_code": None, "error": None}
    try:
        import boto3
        import botocore.exceptions

        session = boto3.Session()
        credentials = session.get_credentials()
        if credentials is None:
            raise RuntimeError("no credentials found by the default chain")
        out["sdk_provider"] = credentials.method
        out["provider"] = PROVIDERS.get(credentials.method, credentials.method)
        credentials.get_frozen_credentials()  # deferred providers call STS here
        out["arn"] = session.client("sts").get_caller_identity()["Arn"]
    except Exception as error:  # reported, not raised: the harness compares outcomes
        code = None
        response = getattr(error, "response", None)
        if isinstance(response, dict):
            code = response.get("Error", {}).get("Code")
        text = " ".join(f"{type(error).__name__}: {error}".split())
        if code is None:
            code = next((c for c in KNOWN_CODES if c in text), None)
        out["error_code"] = code
        out["error"] = text
    json.dump(out, sys.stdout)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
