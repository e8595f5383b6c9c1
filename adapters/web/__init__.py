"""The browser's side of the bot: the account-link sign-in every platform's links open, and the web console."""
