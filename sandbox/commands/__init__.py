"""CLI commands, one module each; they register on sandbox.cli_app.app."""
