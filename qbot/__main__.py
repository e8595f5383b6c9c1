from qbot.cli import main

raise SystemExit(main())
