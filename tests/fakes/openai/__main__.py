"""`PYTHONPATH=tests python -m fakes.openai --port 8090`: serve the fake until interrupted."""

from .server import main

main()
