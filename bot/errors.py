"""Domain errors. Each carries the short, actionable text a chat user sees; adapters never invent one."""

from __future__ import annotations


class QBotError(Exception):
    """Base class: `user_message` is safe to show the chat user (no secrets, no stack trace)."""

    user_message = "Something went wrong on our side. Please try again in a minute."

    def __init__(self, user_message: str | None = None, *, detail: str = "") -> None:
        if user_message is not None:
            self.user_message = user_message
        self.detail = detail  # for logs only; never contains a secret
        super().__init__(detail or self.user_message)


class NotLinked(QBotError):
    user_message = "You haven't linked your account yet. Run qlink to sign in once; then ask again."


class LinkExpired(QBotError):
    user_message = "Your sign-in has expired or was revoked. Run qlink to link your account again."


class LinkTokenInvalid(QBotError):
    user_message = "This sign-in link is invalid, expired or already used. Run qlink again for a new one."


class LoginStateInvalid(QBotError):
    user_message = "This sign-in attempt is invalid, expired or already finished. Run qlink again."


class IdentityProviderError(QBotError):
    user_message = "The sign-in service refused the login."


class IdTokenInvalid(QBotError):
    user_message = "The sign-in service returned an identity we could not verify. Run qlink again."


class EmailTagMissing(QBotError):
    user_message = (
        "Your sign-in carries no email tag for AWS, so Amazon Q cannot know who you are. "
        "Ask your administrator to add the https://aws.amazon.com/tags claim to the IdP app."
    )


class EmailMismatch(QBotError):
    user_message = (
        "You signed in as a different person than your chat profile says. "
        "Sign in with your own account; run qlink again for a new link."
    )


class ProfileEmailUnknown(QBotError):
    user_message = (
        "I couldn't read the email address of your chat profile, which I need to make sure the sign-in is "
        "really yours. Try qlink again in a minute; if it keeps failing, ask your administrator."
    )


class LinkNotBindable(ProfileEmailUnknown):
    """A sign-in link that neither opens only in one browser nor names an email to check the sign-in against
    would bind whoever opens it to the requester's chat account: the core never makes one."""


class EmailTagMismatch(QBotError):
    user_message = (
        "Your sign-in names one email address, but the identity it gives AWS names another, so Amazon Q would "
        "answer as someone else. Nothing was linked. Ask your administrator to fix the IdP's "
        "https://aws.amazon.com/tags claim: its Email tag must be your own verified email."
    )


class NotYourConversation(QBotError):
    user_message = "Only the person who asked can rate this answer."


class QUnavailable(QBotError):
    user_message = "Amazon Q is not answering right now. Please try again in a minute."

    def __init__(self, user_message: str | None = None, *, detail: str = "", request_id: str = "") -> None:
        super().__init__(user_message, detail=detail)
        self.request_id = request_id


class QThrottled(QUnavailable):
    user_message = "Amazon Q is busy right now. Please try again in a minute."


class QRefused(QBotError):
    """Q Business refused the request for a reason the user can act on (access, license, validation)."""

    user_message = "Amazon Q refused the request."


class ConfigError(QBotError):
    """Missing or contradictory configuration: raised at start-up, shown to the operator."""


class SamlResponseInvalid(QBotError):
    """A SAML response we cannot trust (malformed, unsafe XML, wrapped, or failing a check): nothing is linked."""

    user_message = "The sign-in service's answer could not be verified, so nothing was linked. Run qlink again."


class SamlSignatureInvalid(SamlResponseInvalid):
    user_message = (
        "The sign-in service's answer is not signed by your company's sign-in service, so nothing was linked. "
        "Run qlink again; if this keeps happening, tell your administrator."
    )


class SamlAudienceMismatch(SamlResponseInvalid):
    user_message = (
        "The sign-in service's answer was meant for another service (issuer, audience or recipient differ), so "
        "nothing was linked. Tell your administrator: the qbot SAML application may be misconfigured."
    )


class SamlExpired(SamlResponseInvalid):
    user_message = "This sign-in is outside its validity window (expired, or not yet valid). Run qlink again."


class SamlOtherLogin(SamlResponseInvalid):
    user_message = "This sign-in answers another sign-in attempt than this one. Run qlink again."


class SamlAssertionReplayed(SamlResponseInvalid):
    user_message = "This sign-in was already used. Run qlink again for a new one."


class SamlEmailTagMissing(EmailTagMissing):
    user_message = (
        "Your sign-in carries no email attribute for AWS, so Amazon Q cannot know who you are. Ask your "
        "administrator to add the https://aws.amazon.com/SAML/Attributes/PrincipalTag:Email claim to the IdP app."
    )


class SamlMetadataInvalid(ConfigError):
    """The IdP's SAML metadata cannot be read or lacks what we need: the operator's problem, said to the user."""

    user_message = (
        "Sign-in is not available right now: the sign-in service's metadata cannot be read. Tell your administrator."
    )


class SignInExpired(NotLinked):
    """SAML mode: the credentials of the last sign-in expired, and SAML has no refresh token to get new ones."""

    user_message = (
        "Your sign-in has expired: with your company's sign-in, qbot can act for you only for some hours at a "
        "time. Run qlink to sign in again; it usually takes one click."
    )


class SamlEmailTagMismatch(EmailTagMismatch):
    user_message = (
        "Your sign-in names one email address, but the identity it gives AWS names another, so Amazon Q would "
        "answer as someone else. Nothing was linked. Ask your administrator to make the IdP's "
        "https://aws.amazon.com/SAML/Attributes/PrincipalTag:Email claim and the NameID the same, your own, email."
    )
