from metadj_bridge.cli import main

raise SystemExit(main())
