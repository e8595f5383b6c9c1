import pytest

from bot.commands import Command, parse_command


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("qlink", Command.LINK), ("/qlink", Command.LINK), ("  QLink  ", Command.LINK), ("qunlink", Command.UNLINK),
        ("/qstatus", Command.STATUS), ("qnew please", Command.NEW), ("help", Command.HELP), ("", Command.HELP),
        ("   ", Command.HELP), ("/qwhat", Command.HELP), ("What is Project Aurora?", None), ("qlinks?", None),
    ],
)
def test_commands_help_and_questions(text: str, expected: Command | None) -> None:
    assert parse_command(text) is expected


def test_files_without_text_are_a_question_and_commands_still_win() -> None:
    assert parse_command("", with_files=True) is None
    assert parse_command("  ", with_files=True) is None
    assert parse_command("qnew", with_files=True) is Command.NEW
    assert parse_command("summarise this", with_files=True) is None
