"""The chat commands every adapter shares, parsed once here from message text or a slash command."""

from __future__ import annotations

from enum import Enum


class Command(Enum):
    LINK = "qlink"
    UNLINK = "qunlink"
    STATUS = "qstatus"
    NEW = "qnew"
    PLUGINS = "qplugins"
    PLUGIN = "qplugin"  # qplugin <name> <request>: ask one plugin (PLUGIN_MODE)
    HELP = "help"


_WORDS = {command.value: command for command in Command}


def parse_command(text: str, *, with_files: bool = False) -> Command | None:
    """`qlink`, `/qlink` and `QLink ` are commands; empty text and unknown `/words` are HELP; else a question.

    Files sent with no text are a question (about the files), not a request for help.
    """
    stripped = text.strip()
    if not stripped:
        return None if with_files else Command.HELP
    first, _, _rest = stripped.partition(" ")
    word = first.lower()
    slash = word.startswith("/")
    word = word.lstrip("/")
    if word in _WORDS:
        return _WORDS[word]
    if slash or word in ("?", "hi", "hello"):
        return Command.HELP
    return None


def command_arguments(text: str) -> str:
    """What follows the command word: `qplugin jira open a ticket` -> `jira open a ticket`."""
    return text.strip().partition(" ")[2].strip()


HELP_TEXT = (
    "Ask me anything about your company's documents; I answer with Amazon Q Business, using only what you "
    "may read. Each thread is one conversation.\n"
    "• qlink — link your chat account to your company sign-in (once)\n"
    "• qstatus — show whether you are linked, and as whom\n"
    "• qnew — start a new conversation here\n"
    "• qplugins — list the plugins (Jira, Salesforce, …) you can ask\n"
    "• qplugin <name> <request> — ask one plugin, e.g. qplugin jira open a ticket for a new laptop\n"
    "• qunlink — forget your sign-in and conversations\n"
    "• help — this message"
)

# Where signing in is the link (the web console): no threads, no qlink; buttons do what commands do elsewhere.
CONSOLE_HELP_TEXT = (
    "Ask me anything about your company's documents; I answer with Amazon Q Business, using only what you "
    "may read, with numbered sources. Your conversations are kept by Amazon Q and listed under Conversations.\n"
    "• New conversation (or qnew) — start afresh\n"
    "• qstatus — show whether you are signed in, and as whom\n"
    "• qplugins — list the plugins (Jira, Salesforce, …) you can ask; qplugin <name> <request> asks one\n"
    "• Sign out (or qunlink) — forget your sign-in on this device\n"
    "• help — this message"
)
