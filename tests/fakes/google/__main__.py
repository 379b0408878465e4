"""`PYTHONPATH=tests python -m fakes.google --port 8088`: serve the fake until interrupted."""

from .server import main

main()
