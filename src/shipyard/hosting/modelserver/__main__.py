"""``python -m shipyard.hosting.modelserver``: see the package docstring."""

from shipyard.hosting.modelserver.server import main

raise SystemExit(main())
