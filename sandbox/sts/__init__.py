"""AWS STS stand-in: AssumeRoleWithWebIdentity, checked the way AWS checks it.

The bot turns each user's id_token into AWS credentials here, and Q Business answers as whoever those
credentials name. A stand-in that waved tokens through (as moto's does) would prove nothing about that chain,
so this one verifies the token against the issuer's published keys, applies the role's trust (provider,
audience, an Email session tag) and answers in STS's own Query-protocol XML, so the bot's real boto3 client
parses successes and raises the same ClientError codes AWS would.

AssumeRoleWithSAML is checked as strictly: `saml` holds the assertion checks (the SAML provider's metadata
certificates, signature wrapping and DTDs refused, issuer, expiry), the endpoint adds replay and the role's
trust (Role attribute, `SAML:aud`, the Email tag). `webidentity` holds the token checks (the issuer's keys,
expiry, audience, session tags), `service` the endpoint (IAM's providers and roles, the Query protocol, the
role's trust) and `errors` what STS answers when it refuses.
"""

from sandbox.sts.errors import STSError
from sandbox.sts.saml import SAMLIdentity, SAMLProvider
from sandbox.sts.service import Role, SAMLRole, SandboxSTS, STSFaults, STSStats
from sandbox.sts.webidentity import TAGS_CLAIM, OIDCProvider, WebIdentity

__all__ = [
    "TAGS_CLAIM", "OIDCProvider", "Role", "SAMLIdentity", "SAMLProvider", "SAMLRole", "STSError", "STSFaults",
    "STSStats", "SandboxSTS", "WebIdentity",
]  # fmt: skip
