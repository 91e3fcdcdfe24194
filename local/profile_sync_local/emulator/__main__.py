from profile_sync_local.emulator.cli import main

raise SystemExit(main())
