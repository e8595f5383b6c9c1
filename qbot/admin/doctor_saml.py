"""`qbot doctor`'s IdP checks in SAML mode (QBOT_SAML_METADATA_URL or _FILE set), instead of the OIDC ones:
the IdP's metadata is readable and complete, its signing certificates outlive the next 30 days, the ACS URL the
IdP posts to is https, and IAM's SAML provider (QBOT_SAML_PROVIDER_ARN) holds the same metadata — STS verifies
assertions against IAM's copy, not against the bot's, so a certificate the IdP rolled over must reach both.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping
from urllib.parse import urlsplit

import httpx
from botocore.exceptions import NoCredentialsError
from cryptography import x509

from adapters.checks import FAIL, OK, SKIP, WARN, Check
from adapters.hosts import is_loopback_host
from bot.aws_clients import AWS_ERRORS, AdminAws, describe, error_code
from qbot.admin.policies import name_of_saml_provider_arn
from qbot.admin.saml_metadata import (
    IdpMetadata,
    MetadataError,
    acs_url,
    parse_metadata,
    read_metadata,
    trust_difference,
)

#: A signing certificate that expires sooner than this fails the doctor: time to roll it over at the IdP.
CERTIFICATE_NOTICE = dt.timedelta(days=30)
_DENIED = {"AccessDenied", "AccessDeniedException", "UnauthorizedOperation", "UnrecognizedClientException"}


def saml_mode(env: Mapping[str, str]) -> bool:
    return bool(env.get("QBOT_SAML_METADATA_URL") or env.get("QBOT_SAML_METADATA_FILE"))


def _provision_fix(source: str) -> str:
    return f"then run `qbot admin provision --saml-metadata {source}` so IAM's SAML provider holds it too"


class SamlChecks:
    """The metadata the first check reads is used by the certificate and provider checks."""

    def __init__(
        self, env: Mapping[str, str], http: httpx.Client, aws: AdminAws,
        now: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC),
    ) -> None:
        self.env = env
        self._http = http
        self._aws = aws
        self._now = now
        self.source = env.get("QBOT_SAML_METADATA_URL") or env.get("QBOT_SAML_METADATA_FILE") or ""
        self._metadata: IdpMetadata | None = None

    def metadata(self) -> Check:
        if self.env.get("QBOT_SAML_METADATA_URL") and self.env.get("QBOT_SAML_METADATA_FILE"):
            return Check("SAML metadata", FAIL, "both QBOT_SAML_METADATA_URL and QBOT_SAML_METADATA_FILE are set",
                         "keep one: the IdP's federation metadata URL, or a file holding it")
        try:
            self._metadata = parse_metadata(read_metadata(self.source, self._http))
        except MetadataError as err:
            return Check("SAML metadata", FAIL, f"{self.source}: {err}",
                         "use the IdP's SAML metadata (Entra ID: App Federation Metadata Url, or the Federation "
                         "Metadata XML file of the enterprise application)")
        found = self._metadata
        return Check("SAML metadata", OK, f"{self.source}: IdP {found.entity_id}, sign-in at {found.sso_url}, "
                     f"{len(found.certificates)} signing certificate(s)")

    def certificates(self) -> Check:
        if self._metadata is None:
            return Check("SAML certificates", SKIP, "needs the metadata")
        now = self._now()
        expiries = sorted(_expiry(cert) for cert in self._metadata.certificates)
        soon = [when for when in expiries if when - now < CERTIFICATE_NOTICE]
        fix = ("create a new SAML signing certificate at the IdP and make it active (Entra ID: the enterprise "
               f"application's Single sign-on > SAML Certificates), {_provision_fix(self.source)}")
        if len(soon) == len(expiries):
            latest = expiries[-1]
            state = "expired" if latest <= now else f"expires in {(latest - now).days} day(s)"
            return Check("SAML certificates", FAIL, f"the IdP's last signing certificate {state} "
                         f"({latest:%Y-%m-%d}): after that no sign-in verifies", fix)
        if soon:
            return Check("SAML certificates", WARN, f"{len(soon)} of {len(expiries)} signing certificates expire "
                         f"within {CERTIFICATE_NOTICE.days} days (the first on {soon[0]:%Y-%m-%d})",
                         f"make sure the IdP signs with the newer one, {_provision_fix(self.source)}")
        return Check("SAML certificates", OK, f"the IdP's signing certificate(s) are valid until "
                     f"{expiries[0]:%Y-%m-%d} or later")

    def acs(self) -> Check:
        public = (self.env.get("QBOT_PUBLIC_URL") or "").rstrip("/")
        parts = urlsplit(public)
        if not parts.hostname or parts.scheme not in ("http", "https"):
            return Check("SAML ACS URL", FAIL, "QBOT_PUBLIC_URL is unset or not an http(s) URL",
                         "set it to the URL users' browsers reach the bot at")
        url = acs_url(public)
        if parts.scheme != "https" and not is_loopback_host(parts.hostname):
            return Check("SAML ACS URL", FAIL, f"{url} is plain http: the IdP would post users' assertions "
                         "unencrypted, and IdPs refuse such reply URLs", "serve the bot over https and set "
                         "QBOT_PUBLIC_URL=https://…")
        return Check("SAML ACS URL", OK, f"the IdP posts to {url} (its Reply URL, and the role's SAML:aud)")

    def provider(self) -> Check:
        arn = self.env.get("QBOT_SAML_PROVIDER_ARN") or ""
        try:
            name_of_saml_provider_arn(arn)
        except ValueError:
            return Check("SAML provider", FAIL, f"QBOT_SAML_PROVIDER_ARN={arn!r} is not an IAM SAML provider ARN "
                         "(arn:aws:iam::<account>:saml-provider/<name>)",
                         "set it to the QBOT_SAML_PROVIDER_ARN line `qbot admin provision --saml-metadata` prints")
        if self.env.get("QBOT_STS_ENDPOINT_URL") and not self.env.get("QBOT_IAM_ENDPOINT_URL"):
            return Check("SAML provider", SKIP, "STS is a custom endpoint (QBOT_STS_ENDPOINT_URL) and no "
                         "QBOT_IAM_ENDPOINT_URL is set to read the provider from")
        try:
            held = self._aws.iam().get_saml_provider(SAMLProviderArn=arn).get("SAMLMetadataDocument") or ""
        except NoCredentialsError:
            return Check("SAML provider", SKIP, "no AWS credentials here to read it with")
        except AWS_ERRORS as err:
            code = error_code(err)
            if code == "NoSuchEntity":
                return Check("SAML provider", FAIL, f"{arn} does not exist",
                             "run `qbot admin provision --saml-metadata …`, or set QBOT_SAML_PROVIDER_ARN to the "
                             "provider it created")
            if code in _DENIED:
                return Check("SAML provider", SKIP, f"these AWS credentials may not read it ({code})")
            return Check("SAML provider", FAIL, f"IAM GetSAMLProvider failed: {describe(err)}",
                         "check the AWS credentials here")
        if self._metadata is None:
            return Check("SAML provider", OK, f"{arn} exists (its metadata not compared: the IdP's is unreadable)")
        try:
            iam_copy = parse_metadata(held)
        except MetadataError as err:
            return Check("SAML provider", FAIL, f"{arn} holds metadata that does not parse ({err})",
                         f"run `qbot admin provision --saml-metadata {self.source}`")
        difference = trust_difference(self._metadata, iam_copy)
        fix = f"run `qbot admin provision --saml-metadata {self.source}` to update it"
        if difference.other_issuer or difference.missing:
            return Check("SAML provider", FAIL, f"{arn} holds other metadata than {self.source}: "
                         f"{difference.describe()}: STS would refuse the assertions the IdP signs now", fix)
        if difference.retired:
            return Check("SAML provider", WARN, f"{arn} holds the IdP's metadata, but {difference.describe()}: "
                         "assertions signed with a retired key would still be accepted", fix)
        return Check("SAML provider", OK, f"{arn} holds the IdP's metadata (entity id and signing certificates)")


def _expiry(cert: x509.Certificate) -> dt.datetime:
    return cert.not_valid_after_utc

