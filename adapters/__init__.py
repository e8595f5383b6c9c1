"""Chat platform adapters: each translates its platform's events into the core's neutral types and back."""
