"""python -m sandbox.cli"""

from sandbox.cli.main import app

app()
