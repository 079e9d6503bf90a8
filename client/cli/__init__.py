"""The commands of starter.py, one module per group. Each `add(sub)` registers its commands;
each command runs as `await args.run(args, settings)` and returns the exit code: 0 done,
1 failed or not found, 2 a bad flag or request (the message names it)."""
