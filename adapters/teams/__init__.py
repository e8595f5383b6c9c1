"""Microsoft Teams: Bot Framework activities at `POST /api/messages`, translated to and from the core's types."""
