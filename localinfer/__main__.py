from localinfer.cli.main import main

raise SystemExit(main())
