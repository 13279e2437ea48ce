from context8.cli import main

raise SystemExit(main())
