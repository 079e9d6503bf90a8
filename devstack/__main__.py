from devstack.stack import main
from workflows.client import exit_without_finalizing

exit_without_finalizing(main())
