from ara_sidecar.cli import main

raise SystemExit(main())
