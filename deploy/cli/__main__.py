"""``python -m deploy.cli`` is ``fedsynth``."""

from deploy.cli.main import main

main()
