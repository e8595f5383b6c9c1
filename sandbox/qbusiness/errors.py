"""What Q Business answers when it refuses, in the words real users were shown."""

from __future__ import annotations

# Messages real users were shown. The subscription error (AccessDeniedException, then auto-subscribed) is
# quoted in aws-samples/amazon-q-business-samples (IAM federation samples); the expired conversation in
# aws-samples/amazon-q-slack-gateway issue 51; the identity one in amazon-q-business-code-analysis issue 27.
SUBSCRIPTION_MISSING = "User does not have a subscription for the given application."
CONVERSATION_GONE = "Conversation not found or has expired"
IDENTITY_REQUIRED = (
    "User ID must be null and identity-aware credentials must be passed for applications with identity type "
    "AWS_IAM_IDP_OIDC."
)


def from_request(request_id: str, message: str) -> str:
    """Q Business wraps many messages this way; clients that show them verbatim show this."""
    return f"Exception occurred for requestId: {request_id} with message: {message}"
