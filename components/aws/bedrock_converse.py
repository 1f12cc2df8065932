"""Bedrock Converse: sends one prompt to a Bedrock model through the Converse API. Credentials:
explicit keys, or (left empty) the AWS default chain — IRSA web identity on EKS, a CLI profile,
env keys; optionally assumes an IAM role on top."""

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


class BedrockConverseComponent(Component):
    display_name = "Bedrock Converse"
    description = "Send a prompt to an Amazon Bedrock model with the Converse API."
    icon = "Amazon"
    name = "BedrockConverse"

    inputs = [
        MessageTextInput(name="model_id", display_name="Model ID", value="anthropic.claude-3-haiku-20240307-v1:0"),
        MessageTextInput(name="prompt", display_name="Prompt", required=True),
        MessageTextInput(name="region", display_name="Region", value="us-east-1"),
        MessageTextInput(name="role_arn", display_name="IAM Role ARN", advanced=True,
                         info="Optional: assume this role with the resolved credentials"),
        SecretStrInput(name="access_key_id", display_name="AWS Access Key ID", advanced=True),
        SecretStrInput(name="secret_access_key", display_name="AWS Secret Access Key", advanced=True),
        SecretStrInput(name="session_token", display_name="AWS Session Token", advanced=True),
    ]
    outputs = [Output(display_name="Reply", name="reply", method="converse")]

    def converse(self) -> Data:
        session, provider = aws_session(
            self.region, self.role_arn, self.access_key_id, self.secret_access_key, self.session_token
        )
        caller = session.client("sts").get_caller_identity()["Arn"]
        response = session.client("bedrock-runtime").converse(
            modelId=self.model_id,
            messages=[{"role": "user", "content": [{"text": self.prompt}]}],
        )
        text = "".join(part.get("text", "") for part in response["output"]["message"]["content"])
        self.status = f"{len(text)} chars from {self.model_id} as {caller} ({provider})"
        return Data(data={"text": text, "model_id": self.model_id, "provider": provider, "caller": caller})
