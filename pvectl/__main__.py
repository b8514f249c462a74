from pvectl.cli.main import main

raise SystemExit(main())
