"""Local stand-ins for everything outside qbot: an OpenID Connect IdP, AWS STS and Amazon Q Business.

They speak the real wire protocols and are as strict as the real services. Nothing here imports `bot/` or
`adapters/`: a stand-in that shared the bot's code would share its bugs.
"""
