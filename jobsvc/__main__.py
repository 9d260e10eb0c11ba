from jobsvc.cli import main

raise SystemExit(main())
