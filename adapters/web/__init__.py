"""The web console: a small browser chat page served by the bot, whose sign-in is the account link."""
