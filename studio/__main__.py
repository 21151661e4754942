"""``python -m studio`` does what the ``studio`` console command does."""

from studio.cli import main

raise SystemExit(main())
