"""The qbot core: one-time OIDC links, the token vault, the credential broker, Q Business conversations.

It imports no chat SDK. Adapters (adapters/) translate chat platforms into the neutral types of `bot.model`.
"""
