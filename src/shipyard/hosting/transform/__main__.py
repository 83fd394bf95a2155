"""``python -m shipyard.hosting.transform``: the entry point of a transform job."""

from shipyard.hosting.transform.runner import main

raise SystemExit(main())
