"""The Slack adapter's `QBOT_SLACK_*` settings, read from `Settings.extra` (DESIGN.md names the contract).

The adapter is on when its credentials are set: a bot token and a signing secret (HTTP mode, events at
`POST /slack/events`), or a bot token and an app-level token (Socket Mode; no public URL needed). Half a
configuration is an error at start-up, not a silently missing adapter.

`QBOT_SLACK_ASSISTANT` [false] says the app has Slack's AI-app surface on (the manifest's `agent_view`, or the
older `assistant_view`): DM questions then show the thread status instead of a "Thinking…" message, and new
threads get `QBOT_SLACK_SUGGESTED_PROMPTS` (up to four, separated by `|`) — see adapters/slack/assistant.py.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from adapters.hosts import is_loopback_host
from adapters.slack.origins import origin_of
from bot.config import Problems, env_flag

DEFAULT_API_URL = "https://slack.com/api/"
MAX_SUGGESTED_PROMPTS = 4  # assistant.threads.setSuggestedPrompts takes up to four
MAX_PROMPT_CHARS = 150  # a prompt is a button's label and the message it sends: keep it one short question
DEFAULT_SUGGESTED_PROMPTS = (
    "What can you tell me about our onboarding process?",
    "Summarize our travel expense policy",
    "Where do I find the latest security guidelines?",
)


@dataclass(frozen=True)
class SlackSettings:
    bot_token: str
    signing_secret: str = ""
    app_token: str = ""
    api_url: str = DEFAULT_API_URL
    assistant: bool = False
    suggested_prompts: tuple[str, ...] = DEFAULT_SUGGESTED_PROMPTS

    @property
    def socket_mode(self) -> bool:
        return bool(self.app_token)

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> SlackSettings | None:
        """None when Slack is not configured at all; ConfigProblems naming everything wrong when it is configured
        by halves or with malformed values."""
        bot_token = (env.get("QBOT_SLACK_BOT_TOKEN") or "").strip()
        signing_secret = (env.get("QBOT_SLACK_SIGNING_SECRET") or "").strip()
        app_token = (env.get("QBOT_SLACK_APP_TOKEN") or "").strip()
        if not (bot_token or signing_secret or app_token):
            return None
        problems = Problems()
        if not bot_token:
            problems.add("Slack needs QBOT_SLACK_BOT_TOKEN (the xoxb- bot token) as well")
        if not (signing_secret or app_token):
            problems.add(
                "Slack needs QBOT_SLACK_SIGNING_SECRET (HTTP mode) or QBOT_SLACK_APP_TOKEN (Socket Mode) as well"
            )
        if app_token and not app_token.startswith("xapp-"):
            problems.add("QBOT_SLACK_APP_TOKEN must be an app-level token (xapp-...) with connections:write")
        api_url = (env.get("QBOT_SLACK_API_URL") or DEFAULT_API_URL).strip()
        origin = origin_of(api_url)
        if origin is None or (origin.scheme != "https" and not is_loopback_host(origin.host)):
            # The bot token goes with every Web API call: never in clear text beyond this machine.
            problems.add(f"QBOT_SLACK_API_URL must be an https URL (plain http only on loopback), not {api_url!r}")
        assistant = problems.read(lambda: env_flag(env, "QBOT_SLACK_ASSISTANT", False), False)
        prompts = _suggested_prompts(env, problems)
        problems.raise_any()
        return cls(
            bot_token=bot_token,
            signing_secret=signing_secret,
            app_token=app_token,
            api_url=api_url.rstrip("/") + "/",
            assistant=assistant,
            suggested_prompts=prompts,
        )


def _suggested_prompts(env: Mapping[str, str], problems: Problems) -> tuple[str, ...]:
    raw = env.get("QBOT_SLACK_SUGGESTED_PROMPTS")
    if raw is None or not raw.strip():
        return DEFAULT_SUGGESTED_PROMPTS
    prompts = tuple(p.strip() for p in raw.split("|") if p.strip())
    if len(prompts) > MAX_SUGGESTED_PROMPTS:
        problems.add(f"QBOT_SLACK_SUGGESTED_PROMPTS takes at most {MAX_SUGGESTED_PROMPTS} prompts (separated by |)")
    if any(len(p) > MAX_PROMPT_CHARS for p in prompts):
        problems.add(f"each of QBOT_SLACK_SUGGESTED_PROMPTS is at most {MAX_PROMPT_CHARS} characters")
    return prompts
