from services.stack.cli import main

raise SystemExit(main())
