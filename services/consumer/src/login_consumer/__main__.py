"""``python -m login_consumer`` is ``login-consumer``."""

import sys

from login_consumer.cli import main

sys.exit(main())
