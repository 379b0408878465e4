"""`PYTHONPATH=tests python -m fakes.devstack --oauth-port ...`: serve the fakes until stopped."""

from .stack import main

main()
