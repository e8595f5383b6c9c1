"""What STS answers when it refuses: an error code, its message and HTTP status, as AWS words them."""

from __future__ import annotations

TOO_LONG_FOR_ROLE = "The requested DurationSeconds exceeds the MaxSessionDuration set for this role."
NOT_AUTHORIZED = "Not authorized to perform sts:AssumeRoleWithWebIdentity"
NO_VERIFICATION_KEY = (
    "Couldn't retrieve verification key from your identity provider,  "
    "please reference AssumeRoleWithWebIdentity documentation for requirements"
)

# Status and message AWS answers with for the codes a test may inject through `faults.error_next`.
CANNED_ERRORS: dict[str, tuple[int, str]] = {
    "Throttling": (400, "Rate exceeded"),
    "IDPCommunicationError": (400, "Couldn't connect to the identity provider, please retry"),
    "IDPRejectedClaim": (403, "The identity provider rejected the claim"),
    "InvalidIdentityToken": (400, NO_VERIFICATION_KEY),
    "ExpiredTokenException": (400, "Token expired"),
    "AccessDenied": (403, NOT_AUTHORIZED),
    "RegionDisabledException": (403, "STS is not activated in this region for this account"),
    "InternalFailure": (500, "An internal error occurred"),
    "ServiceUnavailable": (503, "Service unavailable"),
}


class STSError(Exception):
    """An error STS answers with: code, message and HTTP status, rendered as an ErrorResponse."""

    def __init__(self, code: str, message: str, status: int = 400) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.status = status


def invalid_token(message: str) -> STSError:
    return STSError("InvalidIdentityToken", message)


def access_denied(action: str = "AssumeRoleWithWebIdentity") -> STSError:
    return STSError("AccessDenied", f"Not authorized to perform sts:{action}", 403)
