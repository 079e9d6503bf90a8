from reliability.faults.runner import main

raise SystemExit(main())
