"""The composition root and command line: builds the core, the adapters and (for `qbot sandbox`) the stand-ins."""
