from client import exit_without_finalizing
from devstack.stack import main

exit_without_finalizing(main())
