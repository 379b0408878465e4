"""`PYTHONPATH=tests python -m fakes.oauth --port 8086`: serve the fake until interrupted."""

from .server import main

main()
