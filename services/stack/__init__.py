"""The whole system in one command: ``python -m services.stack``.

Resolves NATS and PostgreSQL (the environment's, or embedded ones under ``.stack/``), applies the
migrations, seeds a demo portfolio on the paper exchange, starts every service as a child process
and stops everything cleanly on Ctrl-C / SIGTERM.
"""
