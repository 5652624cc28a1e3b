"""`python -m sessions_api ...` is the `sessions-api` command."""

import sys

from sessions_api.cli.commands import main

sys.exit(main())
