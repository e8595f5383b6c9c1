"""The web console over real HTTP, and in a real headless Chromium."""
