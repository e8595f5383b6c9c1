"""Local stand-ins for everything outside qbot: an OpenID Connect IdP, AWS STS and Amazon Q Business (each a
package: `idp`, `sts`, `qbusiness`), Slack's Web API (`slack`) and the Bot Framework connector (`botframework`).

They speak the real wire protocols and are as strict as the real services. `qbot sandbox`, the tests and the
benchmarks all use these same stand-ins. Nothing here imports `bot/`, `adapters/` or `qbot/`: a stand-in that
shared the bot's code would share its bugs.
"""
