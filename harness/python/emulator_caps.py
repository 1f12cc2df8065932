"""Probes a running AWS emulator for what it emulates and what it enforces, by making the calls the harness's
checks rely on and watching what comes back (nothing here is looked up by emulator name).

Usage: emulator_caps.py ENDPOINT REGION ACCOUNT_ID   (the emulator's root keys in AWS_ACCESS_KEY_ID/SECRET)
Prints {"capabilities": [{"id", "kind", "what", "supported", "undecided", "evidence"}]}; everything it creates is
removed. A capability is "not supported" only on a clear answer (the emulator says the API is not emulated, or a call
that must be refused succeeds); anything else (timeouts, connection errors, a wrong result) is "undecided", which the
harness treats as a failed probe, never as a reason to skip a check.
"""

import base64
import json
import secrets
import sys
import time

import boto3
import botocore.config
import botocore.exceptions

ENDPOINT, REGION, ACCOUNT = sys.argv[1], sys.argv[2], sys.argv[3]
SUFFIX = secrets.token_hex(4)
# One attempt per call, short timeouts, and a deadline for the whole probe well inside the harness's 180 s limit, so
# the cleanup below always runs.
CONFIG = botocore.config.Config(retries={"total_max_attempts": 1}, connect_timeout=3, read_timeout=10)
DEADLINE = time.time() + 120
# What LocalStack answers for a service outside its edition, and botocore/emulator variants of "not implemented".
NOT_EMULATED = ("not included in your current license plan", "not yet been emulated", "NotImplemented",
                "not implemented", "Unknown service", "UnknownOperation", "InvalidAction")

results = []
cleanup = []


def client(service, key=None, secret=None, token=None):
    return boto3.client(service, endpoint_url=ENDPOINT, region_name=REGION, config=CONFIG,
                        aws_access_key_id=key, aws_secret_access_key=secret, aws_session_token=token)


def code_of(error):
    response = getattr(error, "response", None) or {}
    return response.get("Error", {}).get("Code") or type(error).__name__


def short(error):
    return " ".join(f"{code_of(error)}: {error}".split())[:240]


def record(cap_id, kind, what, supported, evidence, undecided=False):
    results.append({"id": cap_id, "kind": kind, "what": what, "supported": bool(supported) and not undecided,
                    "undecided": undecided, "evidence": evidence})


def not_emulated(error):
    """The emulator answered that it does not emulate this API (LocalStack: outside its edition)."""
    text = short(error).lower()
    return isinstance(error, botocore.exceptions.ClientError) and any(n.lower() in text for n in NOT_EMULATED)


def in_time(cap_id, kind, what):
    if time.time() > DEADLINE:
        record(cap_id, kind, what, False, "not probed: the probe ran out of time", undecided=True)
        return False
    return True


def emulates(cap_id, what, call):
    """Supported when `call` returns (its value is the evidence); not supported when the emulator says it does not
    emulate the API; undecided on any other failure."""
    if not in_time(cap_id, "emulates", what):
        return
    try:
        record(cap_id, "emulates", what, True, str(call())[:240])
    except Exception as error:  # noqa: BLE001 - every failure is a finding
        record(cap_id, "emulates", what, False, short(error), undecided=not not_emulated(error))


def api_available(service, call):
    """A service's API answers (an error about the request itself still counts as emulated)."""
    what = f"the {service} API"
    if not in_time(f"api:{service}", "emulates", what):
        return
    try:
        call()
        record(f"api:{service}", "emulates", what, True, "answered")
    except botocore.exceptions.ClientError as error:
        record(f"api:{service}", "emulates", what, not not_emulated(error), short(error))
    except Exception as error:  # noqa: BLE001
        record(f"api:{service}", "emulates", what, False, short(error), undecided=True)


def refuses(cap_id, what, call, codes):
    """Enforced when `call` is refused with one of `codes`; not enforced when it succeeds; undecided otherwise."""
    if not in_time(cap_id, "enforces", what):
        return
    try:
        call()
        record(cap_id, "enforces", what, False, "the call that must be refused succeeded")
    except botocore.exceptions.ClientError as error:
        record(cap_id, "enforces", what, code_of(error) in codes, short(error),
               undecided=code_of(error) not in codes)
    except Exception as error:  # noqa: BLE001
        record(cap_id, "enforces", what, False, short(error), undecided=True)


def b64(data):
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def unsigned_token(issuer, subject):
    """A JWT with the claims STS evaluates in a trust policy. Its signature is not valid: the harness's identity
    server checks signatures before the emulator; this probe asks only whether the emulator evaluates the policy."""
    now = int(time.time())
    claims = {"iss": f"https://{issuer}", "sub": subject, "aud": "sts.amazonaws.com", "iat": now, "exp": now + 600}
    return f"{b64({'alg': 'RS256', 'kid': 'caps'})}.{b64(claims)}.{b64({'sig': SUFFIX})}"


def main():
    s3, iam = client("s3"), client("iam")
    bucket = f"lfi-caps-{SUFFIX}"

    def s3_round_trip():
        s3.create_bucket(Bucket=bucket)
        cleanup.append(lambda: s3.delete_bucket(Bucket=bucket))
        s3.put_object(Bucket=bucket, Key="probe.txt", Body=b"probe")
        cleanup.append(lambda: s3.delete_object(Bucket=bucket, Key="probe.txt"))
        body = s3.get_object(Bucket=bucket, Key="probe.txt")["Body"].read()
        assert body == b"probe", body
        return "put + get of one object"

    emulates("s3", "S3 buckets and objects", s3_round_trip)

    def secret_round_trip():
        sm = client("secretsmanager")
        name = f"lfi-caps-{SUFFIX}"
        sm.create_secret(Name=name, SecretString="probe")
        cleanup.append(lambda: sm.delete_secret(SecretId=name, ForceDeleteWithoutRecovery=True))
        assert sm.get_secret_value(SecretId=name)["SecretString"] == "probe"
        return "create + get of one secret"

    emulates("secretsmanager", "Secrets Manager secrets", secret_round_trip)

    # IRSA's premise: a web identity whose `sub` the role's trust policy does not name is refused.
    issuer = f"oidc.lfi-caps.local/id/{SUFFIX}"
    provider_arn = iam.create_open_id_connect_provider(
        Url=f"https://{issuer}", ClientIDList=["sts.amazonaws.com"], ThumbprintList=["0" * 40]
    )["OpenIDConnectProviderArn"]
    cleanup.append(lambda: iam.delete_open_id_connect_provider(OpenIDConnectProviderArn=provider_arn))
    role = f"lfi-caps-web-{SUFFIX}"
    trust = {"Version": "2012-10-17", "Statement": [{
        "Effect": "Allow", "Principal": {"Federated": provider_arn}, "Action": "sts:AssumeRoleWithWebIdentity",
        "Condition": {"StringEquals": {f"{issuer}:sub": "system:serviceaccount:caps:allowed",
                                       f"{issuer}:aud": "sts.amazonaws.com"}}}]}
    role_arn = iam.create_role(RoleName=role, AssumeRolePolicyDocument=json.dumps(trust))["Role"]["Arn"]
    cleanup.append(lambda: iam.delete_role(RoleName=role))
    anonymous_sts = boto3.client("sts", endpoint_url=ENDPOINT, region_name=REGION, config=CONFIG,
                                 aws_access_key_id="unused", aws_secret_access_key="unused")

    def web_identity(subject):
        return anonymous_sts.assume_role_with_web_identity(
            RoleArn=role_arn, RoleSessionName="caps", WebIdentityToken=unsigned_token(issuer, subject)
        )["AssumedRoleUser"]["Arn"]

    emulates("sts-web-identity", "AssumeRoleWithWebIdentity",
             lambda: web_identity("system:serviceaccount:caps:allowed"))
    refuses("iam-trust-policies", "IAM trust policies",
            lambda: web_identity("system:serviceaccount:caps:other"), ("AccessDenied",))

    # A user with no policy at all: refused by an emulator that evaluates permission policies.
    user = f"lfi-caps-user-{SUFFIX}"
    iam.create_user(UserName=user)
    cleanup.append(lambda: iam.delete_user(UserName=user))
    key = iam.create_access_key(UserName=user)["AccessKey"]
    cleanup.append(lambda: iam.delete_access_key(UserName=user, AccessKeyId=key["AccessKeyId"]))
    refuses("iam-permission-policies", "IAM permission policies",
            lambda: client("s3", key["AccessKeyId"], key["SecretAccessKey"]).list_buckets(),
            ("AccessDenied", "AccessDeniedException"))
    # A key that was never issued: refused by an emulator that authenticates requests.
    refuses("iam-authentication", "access keys (unknown keys refused)",
            lambda: client("sts", f"AKIA{secrets.token_hex(8).upper()}", secrets.token_hex(20)).get_caller_identity(),
            ("InvalidClientTokenId", "SignatureDoesNotMatch", "AccessDenied", "UnrecognizedClientException"))

    emulates("bedrock-runtime", "Bedrock Converse", lambda: client("bedrock-runtime").converse(
        modelId="anthropic.claude-3-haiku-20240307-v1:0",
        messages=[{"role": "user", "content": [{"text": "capability probe"}]}],
    )["output"]["message"]["content"][0]["text"])

    def cfn_stack():
        cfn = client("cloudformation")
        name = f"lfi-caps-{SUFFIX}"
        body = {"Resources": {"Probe": {"Type": "AWS::SSM::Parameter",
                                        "Properties": {"Type": "String", "Value": "probe",
                                                       "Name": f"/lfi-caps/{SUFFIX}"}}}}
        cfn.create_stack(StackName=name, TemplateBody=json.dumps(body))
        cleanup.append(lambda: cfn.delete_stack(StackName=name))
        deadline = time.time() + 60
        while time.time() < deadline:
            status = cfn.describe_stacks(StackName=name)["Stacks"][0]["StackStatus"]
            if not status.endswith("IN_PROGRESS"):
                break
            time.sleep(0.5)
        assert status == "CREATE_COMPLETE", status
        value = client("ssm").get_parameter(Name=f"/lfi-caps/{SUFFIX}")["Parameter"]["Value"]
        assert value == "probe", value
        return "a stack's resource created and visible through its own API"

    emulates("cloudformation", "CloudFormation stacks", cfn_stack)

    # The services of the resource types in aws/ (a rehearsal deploys them through CloudFormation).
    api_available("ec2", lambda: client("ec2").describe_vpcs(MaxResults=5))
    api_available("rds", lambda: client("rds").describe_db_clusters(MaxRecords=20))
    api_available("ecs", lambda: client("ecs").list_clusters(maxResults=1))
    api_available("elbv2", lambda: client("elbv2").describe_load_balancers(PageSize=1))
    api_available("ecr", lambda: client("ecr").describe_repositories(maxResults=1))
    api_available("kms", lambda: client("kms").list_keys(Limit=1))
    api_available("logs", lambda: client("logs").describe_log_groups(limit=1))
    api_available("application-autoscaling", lambda: client("application-autoscaling").describe_scalable_targets(
        ServiceNamespace="ecs"))


if __name__ == "__main__":
    try:
        main()
    except Exception as error:  # noqa: BLE001 - the setup itself failed: reported, not raised
        record("probe", "emulates", "the capability probe's setup (IAM role, OIDC provider, user)", False,
               short(error), undecided=True)
    finally:
        for undo in reversed(cleanup):
            try:
                undo()
            except Exception:  # noqa: BLE001 - best effort; names are unique per probe
                pass
    print(json.dumps({"capabilities": results}))
