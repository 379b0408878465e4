"""`PYTHONPATH=tests python -m fakes.cloudrun --port 8085`: serve the fake until interrupted."""

from .server import main

main()
