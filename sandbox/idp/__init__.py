"""An OpenID Connect provider stand-in, as strict as Okta, Entra ID or Keycloak, built on authlib's server.

It issues what the bot's identity chain consumes: authorization codes bound to PKCE (S256 only) and a nonce,
RS256 id_tokens carrying the `https://aws.amazon.com/tags` Email principal tag that STS turns into a session
tag, and rotating refresh tokens with reuse detection. Sign-in is a page listing the directory's people (a
form POST, so tests and headless browsers sign in the same way). `faults` makes it misbehave like a broken
or hostile IdP; `stats` lets tests see how often the bot came back.

The parts, the way authlib keeps its framework integrations apart from its grants: `discovery` (what the
provider announces), `records` (what it stores), `grants` (authlib's grants and endpoints, made strict),
`bridge` (authlib on aiohttp: requests read up front, the HTTP routes), `pages` (sign-in and error pages) and
`provider` (the IdP itself: state, signing, bookkeeping). Users come from `sandbox.directory`.

The SAML 2.0 side (`saml`: service providers, metadata, signed Responses; `saml_routes`: its endpoints)
signs in the same people and answers with the attributes AWS's AssumeRoleWithSAML reads.

Storage is in memory. Everything runs on one asyncio loop and authlib's grant code is synchronous, so each
request's read-validate-write is atomic without locks.
"""

from sandbox.idp.discovery import AWS_TAGS_CLAIM
from sandbox.idp.provider import IdPFaults, IdPStats, SandboxIdP
from sandbox.idp.saml import RegisteredSP, SAMLFaults, SAMLIdP, SAMLStats

__all__ = [
    "AWS_TAGS_CLAIM", "IdPFaults", "IdPStats", "RegisteredSP", "SAMLFaults", "SAMLIdP", "SAMLStats", "SandboxIdP",
]  # fmt: skip
