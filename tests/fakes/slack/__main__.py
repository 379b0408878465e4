"""`PYTHONPATH=tests python -m fakes.slack --port 8087`: serve the fake until interrupted."""

from .server import main

main()
