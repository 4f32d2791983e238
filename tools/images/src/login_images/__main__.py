"""``python -m login_images``: the CLI (``cli.py``)."""

from login_images.cli import main

raise SystemExit(main())
