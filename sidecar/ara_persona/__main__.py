"""`python -m ara_persona personas …`: the persona tools without the sidecar."""

from ara_persona.cli import main

raise SystemExit(main())
